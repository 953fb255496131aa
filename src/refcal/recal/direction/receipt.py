"""The receipt of a direction edit (`direction-receipt.json`): plan, settings, rule, baseline, the chosen trial,
how and where it was saved, and its weights digest; written last."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from refcal import __version__
from refcal.clock import utc_now
from refcal.recal.direction.edits import MODEL_DIR, SavedAs
from refcal.recal.direction.settings import ChoiceRule, SearchSettings
from refcal.recal.direction.trials import SCHEMA_VERSION, Evaluation, SearchPlan, SearchReport, TrialRecord
from refcal.recal.readiness import ReadinessGate
from refcal.targets.weights import weights_digest

if TYPE_CHECKING:
    from refcal.recal.direction.prepare import DirectionJob

RECEIPT_NAME = "direction-receipt.json"


class DirectionReceipt(BaseModel):
    """`direction-receipt.json`: one direction edit, from base to saved model."""

    schema_version: int = SCHEMA_VERSION
    refcal_version: str = __version__
    kind: Literal["direction"] = "direction"
    plan: SearchPlan
    settings: SearchSettings
    rule: ChoiceRule
    readiness: ReadinessGate | None = None
    """The readiness gate's word on the base (see TrainingReceipt.readiness)."""
    baseline: Evaluation
    chosen: TrialRecord
    trials: int
    """Scored trials in the study."""
    front: list[int]
    saved_as: SavedAs
    """`weights`: edited projections; `bias`: steering as down_proj biases (`mlp_bias`); `steering-file`:
    `steering.json` + `steering.safetensors` that the loader must attach."""
    output: str
    """The folder to load as `hf:OUTPUT`."""
    weights_digest: str
    wall_time_s: dict[str, float]
    """Seconds per stage of the last start (`load`, `directions`, `baseline`, `search`, `save`) and `total`."""
    libraries: dict[str, str]
    started_at: str
    finished_at: str


def earlier_receipt(out: Path) -> DirectionReceipt | None:
    """The receipt of an earlier start whose model is still in place, if any."""
    path = out / RECEIPT_NAME
    if not path.exists() or not (out / MODEL_DIR / "config.json").exists():
        return None
    return DirectionReceipt.model_validate_json(path.read_bytes())


def direction_receipt(job: DirectionJob, report: SearchReport, chosen: TrialRecord, baseline: Evaluation,
                      saved_as: SavedAs, timings: dict[str, float], started_at: str) -> DirectionReceipt:
    libraries = {}
    for name in ("torch", "transformers", "optuna", "plotly"):
        try:
            libraries[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libraries[name] = "not installed"
    output = job.out / MODEL_DIR
    return DirectionReceipt(plan=job.plan, settings=job.settings, rule=job.rule, baseline=baseline, chosen=chosen,
                            trials=len(report.trials), front=report.front, saved_as=saved_as,
                            output=str(output), weights_digest=weights_digest(output), wall_time_s=timings,
                            libraries=libraries, started_at=started_at, finished_at=utc_now(),
                            readiness=job.readiness)
