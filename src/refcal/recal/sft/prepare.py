"""Preparing an SFT run: every check that can be made before a step is taken (output folder, corpus rows,
contamination, base load, LoRA target modules, row lengths), cheap ones first; nothing is written."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refcal.bench.freeze import DEFAULT_LOCKS
from refcal.corpus import ContaminationOptions
from refcal.corpus.reader import ChatRow, read_chat_corpus
from refcal.recal.contrastive import ContrastivePair, ContrastiveSettings, check_layer, read_pairs
from refcal.recal.readiness import ReadinessGate
from refcal.recal.receipt import ContaminationSummary, CorpusInfo, file_digest
from refcal.recal.sft.errors import TrainingSetupError
from refcal.recal.sft.model import check_target_modules, import_training, load_base, resolve_device
from refcal.recal.sft.output import RunPlan, check_output
from refcal.recal.sft.rows import check_contamination, corpus_texts, length_counts
from refcal.recal.sft.settings import SFTSettings
from refcal.targets import make_target
from refcal.targets.base import Fingerprint
from refcal.targets.weights import BaseWeights, resolve_base


@dataclass
class SFTJob:
    """Everything `run_sft` needs, checked: nothing has been written yet."""

    base: BaseWeights
    base_fingerprint: Fingerprint
    """The base as a target fingerprints it (its weights hashed)."""
    corpus_path: Path
    corpus: CorpusInfo
    rows: list[ChatRow]
    pairs_path: Path | None
    pairs_corpus: CorpusInfo | None
    pairs: list[ContrastivePair]
    contamination: ContaminationSummary
    settings: SFTSettings
    out: Path
    plan: RunPlan
    resume_from: Path | None
    device: str
    dtype: str
    model: Any
    tokenizer: Any
    load_seconds: float
    readiness: ReadinessGate | None = None


def prepare_sft(base: str, corpus: Path, out: Path, settings: SFTSettings | None = None, *,
                pairs: Path | None = None, allow_contamination: bool = False, locks: Path = DEFAULT_LOCKS,
                contamination: ContaminationOptions | None = None, readiness: ReadinessGate | None = None) -> SFTJob:
    """Check a LoRA SFT run before it starts; cheap checks first, the base load last. Writes nothing.

    Args:
        base: The base model spec (`hf:PATH`, `llamacpp:smollm2`, `llamacpp:PATH.gguf`).
        corpus: Chat-format JSONL (`messages` ending with the assistant's reply).
        out: The output folder: new, empty, or a run with the same inputs to resume.
        settings: Hyperparameters; defaults when None.
        pairs: JSONL of (harmful, lookalike) pairs; turns on the contrastive stage before SFT.
        allow_contamination: Train even when the corpus meets a frozen bench (recorded in the receipt).
        locks: The folder of bench locks to check the corpus against.
        contamination: Thresholds of the contamination check.
        readiness: What the readiness gate said of the base (recorded in the receipt).

    Raises:
        InputFileError: A corpus or pairs row is malformed (file, line and field named).
        TargetSpecError, MissingExtraError: The base spec is bad, or torch/transformers/trl/peft are missing.
        ContaminationError: The corpus meets a frozen bench and `allow_contamination` is off.
        TrainingSetupError: The output folder, the base load, a LoRA target module or the row lengths.
    """
    settings = settings or SFTSettings()
    import_training()
    rows = read_chat_corpus(corpus)
    pair_rows = read_pairs(pairs) if pairs is not None else []
    weights = resolve_base(base)
    fingerprint = make_target(base).fingerprint  # hashes the weights
    corpus_info = CorpusInfo(path=str(corpus), digest=file_digest(corpus), rows=len(rows))
    pairs_info = CorpusInfo(path=str(pairs), digest=file_digest(pairs), rows=len(pair_rows)) if pairs else None
    plan = RunPlan(base_fingerprint=fingerprint, corpus_digest=corpus_info.digest,
                   pairs_digest=pairs_info.digest if pairs_info else None, settings=settings)
    resume_from = check_output(out, plan)
    summary = check_contamination(corpus_texts(corpus, rows, pairs, pair_rows), locks, allow_contamination,
                                  contamination)
    device, dtype = resolve_device(settings)
    started = time.perf_counter()
    model, tokenizer = load_base(weights, device, dtype)
    check_target_modules(model, settings.target_modules, base)
    if pair_rows:
        _check_contrastive_layer(model, settings.contrastive)
    corpus_info = corpus_info.model_copy(update=length_counts(tokenizer, rows, settings.max_length, corpus))
    return SFTJob(weights, fingerprint, corpus, corpus_info, rows, pairs, pairs_info, pair_rows, summary, settings,
                  out, plan, resume_from, device, dtype, model, tokenizer, time.perf_counter() - started, readiness)


def _check_contrastive_layer(model: Any, settings: ContrastiveSettings) -> None:
    try:
        check_layer(model, settings)
    except ValueError as error:
        raise TrainingSetupError(str(error)) from None
