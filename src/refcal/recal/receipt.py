"""The training receipt: what a recalibration run was given (base, corpus, contamination check, settings) and what it
produced (loss curves, wall time, device, the saved weights' digest), written next to the weights.

Generic over the settings model, so every recalibrator (LoRA SFT, direction editing) writes the same receipt with
its own typed hyperparameters: `TrainingReceipt[SFTSettings]`. Reading one back validates those too.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

from refcal import __version__
from refcal.corpus import ContaminationReport
from refcal.files import file_sha256, sha256_digest, write_atomic
from refcal.recal.readiness import ReadinessGate
from refcal.targets.base import Fingerprint

TRAINING_RECEIPT_VERSION = 1
RECEIPT_NAME = "training-receipt.json"
LIBRARIES = ("torch", "transformers", "trl", "peft")
SHOWN_HITS = 20
"""Hits copied into the receipt; the count is always whole."""
Curve = list[tuple[int, float]]
SettingsT = TypeVar("SettingsT", bound=BaseModel)


class CorpusInfo(BaseModel):
    """A corpus file as training read it."""

    path: str
    digest: str
    """sha256 of the file's bytes."""
    rows: int
    truncated: int = 0
    """Rows longer than `max_length` tokens after templating, cut at the end."""
    dropped: int = 0
    """Rows whose prompt alone fills `max_length`: nothing of their completion is left to learn, so TRL drops them."""


class ContaminationHit(BaseModel):
    """One corpus text that meets a frozen bench item (a short form of `refcal.corpus.Hit`)."""

    kind: str
    score: float
    corpus_path: str
    corpus_line: int
    corpus_field: str
    bench: str
    item_id: str


class ContaminationSummary(BaseModel):
    """The contamination check that ran before training."""

    benches: dict[str, str]
    """Frozen bench name → digest the corpus was checked against; empty when no bench was frozen."""
    hits: int
    """Corpus texts that met a frozen bench item (one per text and bench)."""
    counts: dict[str, int]
    """Hits per kind (exact, near, template, semantic)."""
    skipped: dict[str, str]
    """Layers that did not run, and why."""
    first_hits: list[ContaminationHit]
    """Up to 20 hits, strongest first."""
    allow_contamination: bool
    """True when training was told to run despite hits (`--allow-contamination`)."""
    note: str = ""
    """Why the check could not run at all (no frozen bench), when it could not."""

    @classmethod
    def from_report(cls, report: ContaminationReport | None, allow_contamination: bool,
                    note: str = "") -> ContaminationSummary:
        if report is None:
            return cls(benches={}, hits=0, counts={}, skipped={}, first_hits=[],
                       allow_contamination=allow_contamination, note=note)
        hits = [ContaminationHit(kind=hit.kind, score=hit.score, corpus_path=hit.corpus_path,
                                 corpus_line=hit.corpus_line, corpus_field=hit.corpus_field, bench=hit.bench,
                                 item_id=hit.item_id) for hit in report.hits[:SHOWN_HITS]]
        return cls(benches={bench.name: bench.digest for bench in report.benches}, hits=len(report.hits),
                   counts=dict(report.counts), skipped=dict(report.skipped), first_hits=hits,
                   allow_contamination=allow_contamination, note=note)


class RuntimeInfo(BaseModel):
    """Where training ran."""

    device: str
    """`cpu` or `cuda:N` with the card's name."""
    dtype: str
    """Weights and autocast precision: `float32` or `bfloat16`."""
    cpu_threads: int | None
    """torch threads on CPU (None on CUDA)."""
    libraries: dict[str, str]
    """Versions of torch, transformers, trl and peft."""


class TrainingReceipt(BaseModel, Generic[SettingsT]):
    """One recalibration run, written to `OUT/training-receipt.json` once the weights are in place."""

    schema_version: int = TRAINING_RECEIPT_VERSION
    refcal_version: str = __version__
    kind: Literal["sft"]
    """The recalibrator that produced the weights."""
    base: str
    """The base model spec as given (`hf:PATH`, `llamacpp:smollm2`)."""
    base_fingerprint: Fingerprint
    corpus: CorpusInfo
    pairs: CorpusInfo | None = None
    """The contrastive stage's pairs corpus, when that stage ran."""
    contamination: ContaminationSummary
    readiness: ReadinessGate | None = None
    """The readiness gate's word on the base: ready, or trained anyway with --force (not ready / unchecked)."""
    hyperparameters: SettingsT
    """Every setting, defaults included."""
    target_modules: list[str]
    """The module names the LoRA adapter was attached to, as resolved in this model."""
    trainable_parameters: int
    steps: int
    """Optimiser steps of SFT at the end."""
    resumed_from: str | None = None
    """The checkpoint the last start resumed from (None for a run that was never interrupted)."""
    loss_curve: Curve
    """(step, SFT training loss) as logged."""
    contrastive_loss_curve: Curve = []
    """(step, contrastive loss); empty without the contrastive stage."""
    wall_time_s: dict[str, float]
    """Seconds per stage (`load`, `contrastive`, `sft`, `merge`) of the last start, and `total`."""
    runtime: RuntimeInfo
    started_at: str
    finished_at: str
    output: str
    """The folder holding the merged weights and tokenizer (load it as `hf:OUTPUT`)."""
    weights_digest: str
    """Digest of the saved weights, as the `hf:` target fingerprints them."""
    digest: str = ""
    """sha256 of the rest of the receipt, set when it is written."""


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


file_digest = file_sha256
"""sha256 of a corpus file's bytes (not cached: a corpus may be rewritten between runs)."""


def sealed(receipt: TrainingReceipt[SettingsT]) -> TrainingReceipt[SettingsT]:
    """The receipt with its digest set."""
    return receipt.model_copy(update={"digest": sha256_digest(receipt.model_dump(mode="json", exclude={"digest"}))})


def write_training_receipt(receipt: TrainingReceipt[SettingsT], out: Path) -> Path:
    """Write a sealed receipt atomically into `out` (the last file a training run writes)."""
    if receipt.digest != sha256_digest(receipt.model_dump(mode="json", exclude={"digest"})):
        raise ValueError("seal a training receipt before writing it")
    path = out / RECEIPT_NAME
    write_atomic(path, receipt.model_dump_json(indent=2) + "\n")
    return path


def read_training_receipt(path: Path, settings: type[SettingsT]) -> TrainingReceipt[SettingsT]:
    """A training receipt with its hyperparameters validated as `settings`."""
    return TrainingReceipt[settings].model_validate_json(path.read_bytes())  # type: ignore[valid-type]
