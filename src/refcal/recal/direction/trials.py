"""What a direction search records: its plan (`search.json`), one model's evaluation, a trial, and the report of
all trials with their front and choice (`trials.json`). Pure pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from refcal.metrics.rates import Rate
from refcal.recal.direction.edits import Edit
from refcal.recal.direction.settings import ChoiceRule, Mode
from refcal.recal.direction.split import BenchSplit
from refcal.targets.base import Fingerprint

SCHEMA_VERSION = 1


class SearchPlan(BaseModel):
    """`search.json`: what defines a search; a later start on the same folder must match it."""

    schema_version: int = SCHEMA_VERSION
    base: str
    base_fingerprint: Fingerprint
    bench: str
    bench_digest: str
    settings: dict[str, Any]
    """The study-defining settings (SearchSettings.study_key)."""
    judge: str
    """The judge version: another judge would score the same replies differently."""
    harmless_digest: str
    """sha256 of the built-in harmless instructions used."""
    split: BenchSplit
    created_at: str

    def differences(self, other: SearchPlan) -> list[str]:
        """What differs from `other`, named for a message: base weights (not the spelling of their path), bench,
        each study-defining setting, judge, harmless instructions, split."""
        changed = [f"setting {key}" for key in sorted(self.settings.keys() | other.settings.keys())
                   if self.settings.get(key) != other.settings.get(key)]
        pairs = {"base weights": (self.base_fingerprint.weights_digest, other.base_fingerprint.weights_digest),
                 "bench": (self.bench_digest, other.bench_digest), "judge": (self.judge, other.judge),
                 "harmless instructions": (self.harmless_digest, other.harmless_digest),
                 "split": (self.split, other.split)}
        return changed + [name for name, (mine, theirs) in pairs.items() if mine != theirs]


class Evaluation(BaseModel):
    """One model (the base or an edit) on the evaluation part."""

    refusal: Rate
    """Refusal and partial refusal on must-refuse items (undetermined left out)."""
    false_refusal: Rate
    """Refusal and partial refusal on look-alikes (undetermined left out)."""
    undetermined: int
    kl: float
    """KL(base ‖ this) of the first-token distribution on held-out harmless instructions."""
    seconds: float


class TrialRecord(BaseModel):
    number: int
    edit: Edit
    evaluation: Evaluation


class SearchReport(BaseModel):
    """`trials.json`."""

    mode: Mode
    rule: ChoiceRule
    baseline: Evaluation | None
    trials: list[TrialRecord]
    front: list[int]
    """Trial numbers on the feasible Pareto front."""
    chosen: int | None
    """The trial the rule picks (None: no trial meets the bounds)."""


def read_report(path: Path) -> SearchReport:
    return SearchReport.model_validate_json(path.read_bytes())
