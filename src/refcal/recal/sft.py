"""LoRA SFT of a base model on a chat corpus with TRL's SFTTrainer, optionally after the contrastive stage; the
adapter is merged and saved as safetensors plus tokenizer, so the output folder loads as an `hf:` target.

Two calls: `prepare_sft` checks everything that can be checked before a step is taken (the output folder, the
corpus rows, the contamination check against every frozen bench, the base loading, the LoRA target modules, row
lengths) and writes nothing; `run_sft` trains, checkpoints, merges and writes the training receipt.

Loss on completions only: each chat row becomes a TRL prompt-completion row, the prompt being every message before
the final assistant turn and the completion that turn, both rendered by the model's own chat template. Earlier
assistant turns of a multi-turn row are context, not targets.

Checkpoints go to `OUT/checkpoints/checkpoint-N` every `save_steps` (the newest two kept). A second start with
the same base, corpus and settings resumes from the newest complete checkpoint; a half-written one (a kill or a
full disk mid-save) is removed first, because the trainer writes `trainer_state.json` last. The merged model is
written to a staging folder and moved into OUT with `config.json` last, so OUT never holds a loadable half model.

GPU: the same calls on CUDA. `device = "auto"` picks the GPU and `dtype = "auto"` turns to bfloat16 there
(weights loaded in bf16, bf16 autocast; the LoRA weights stay float32). What usually changes on a GPU:
`batch_size` 16–32 (or keep 4 with `gradient_accumulation` 4–8), `gradient_checkpointing = true` for models
above ~1B, `max_length` 1024–2048; `cpu_threads` is ignored. CPU in float32 stays the tested path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refcal.bench.freeze import DEFAULT_LOCKS, read_locks
from refcal.clock import utc_now
from refcal.corpus import ContaminationOptions, ContaminationReport, CorpusText
from refcal.errors import InputFileError, MissingExtraError, RefcalError
from refcal.files import json_lines, write_atomic
from refcal.recal.contrastive import (
    ContrastivePair,
    ContrastiveSettings,
    Curve,
    check_layer,
    read_pairs,
    train_contrastive,
)
from refcal.recal.readiness import ReadinessGate
from refcal.recal.receipt import (
    RECEIPT_NAME,
    ContaminationSummary,
    CorpusInfo,
    RuntimeInfo,
    TrainingReceipt,
    file_digest,
    library_versions,
    sealed,
    write_training_receipt,
)
from refcal.targets import make_target
from refcal.targets.base import Fingerprint
from refcal.targets.weights import base_location, cpu_threads, load_dense

INSTALL_HINT = "pip install torch==2.13.0 && pip install 'refcal[hf,recal]'"
CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
CONTRASTIVE_DIR = "contrastive"
STAGING = ".merged-staging"
CHECKPOINT_PREFIX = "checkpoint-"
ROLES = ("system", "user", "assistant")
Stage = Literal["contrastive", "sft"]
Progress = Callable[[Stage, int, int, float | None], None]
"""Told (stage, step, total steps, latest loss or None) as training advances; the first call of a stage may come
with a step above 0 when it resumes."""


class TrainingSetupError(RefcalError):
    """Training cannot start: a base that does not load, a missing LoRA target module, an output folder that
    belongs to another run. Raised before any step is taken."""


class ContaminationError(RefcalError):
    """The corpus meets a frozen bench and contamination was not allowed; `report` holds every hit."""

    def __init__(self, report: ContaminationReport) -> None:
        self.report = report
        benches = sorted({hit.bench for hit in report.hits})
        super().__init__(f"the corpus meets frozen bench(es) {', '.join(benches)} in {len(report.hits)} place(s); "
                         "training on a bench it will be judged on would make that bench worthless. Remove those "
                         "rows, or pass --allow-contamination (it is written into the training receipt)")


class SFTSettings(BaseModel):
    """Every hyperparameter of a LoRA SFT run. Defaults suit SmolLM2-135M on 2 CPU cores (about 2–4 s per step
    of 4 short rows); a TOML file may set any of them, with `[contrastive]` as a table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lora_rank: int = Field(16, ge=1)
    """LoRA rank r: the adapter's width."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator; the update is scaled by alpha / r (2 with the defaults)."""
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the adapter's input."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Linear modules that get an adapter, by name (`q_proj`, `v_proj`, ...), or `all-linear`: every linear layer
    but the output head, whatever the architecture calls them."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak AdamW learning rate of the SFT stage."""
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    """Learning-rate schedule after warm-up."""
    warmup: float = Field(0.03, ge=0, lt=1)
    """Share of the steps spent warming up linearly from 0."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay; 0 because LoRA's small rank already limits how far the weights move."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the corpus; ignored when `max_steps` is set."""
    max_steps: int | None = Field(None, ge=1)
    """Optimiser steps to train for, overriding `epochs`."""
    batch_size: int = Field(4, ge=1)
    """Rows per forward pass."""
    gradient_accumulation: int = Field(1, ge=1)
    """Forward passes per optimiser step (effective batch = batch_size × gradient_accumulation)."""
    max_length: int = Field(512, ge=16)
    """Tokens per row after templating; longer rows are cut at the end, and rows whose prompt alone fills it are
    left out (both counted in the receipt)."""
    seed: int = 0
    """Seeds LoRA initialisation, data order, dropout and the contrastive stage's sampling."""
    save_steps: int = Field(50, ge=1)
    """A checkpoint every this many steps (and at the end); the newest two are kept."""
    logging_steps: int = Field(1, ge=1)
    """A loss-curve point every this many steps."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` takes CUDA when torch sees a GPU."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """`auto` is bfloat16 on a GPU that supports it and float32 otherwise."""
    cpu_threads: int | None = Field(None, ge=1)
    """torch threads on CPU; None keeps torch's default (one per core). Use 1 when other jobs share the cores:
    OpenMP threads waiting on each other made a step ten times slower on a busy 2-core machine."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""
    contrastive: ContrastiveSettings = ContrastiveSettings()
    """The contrastive stage's settings (used only with a pairs corpus)."""


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> SFTSettings:
    """Settings from a TOML file (if any), then `overrides` (None values skipped) on top of it.

    Raises:
        InputFileError: The file is not TOML, or a key is unknown or has a bad value (named as its field).
    """
    data: dict[str, Any] = {}
    where = str(path) if path is not None else None
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputFileError("no such settings file", path=where) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise InputFileError(f"not TOML: {error}", path=where) from None
    data.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return SFTSettings.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"] if "[" not in str(part))  # not union branch names
        if first["type"] == "extra_forbidden":
            known = _known_keys(first["loc"][:-1])
            raise InputFileError(f"unknown setting (known: {', '.join(known)})", path=where, field=field) from None
        raise InputFileError(first["msg"], path=where, field=field) from None


def _known_keys(parent: Sequence[Any]) -> list[str]:
    model = ContrastiveSettings if list(parent) == ["contrastive"] else SFTSettings
    return sorted(model.model_fields)


# The base model.

@dataclass(frozen=True)
class BaseWeights:
    """Where a base spec's weights are, and its fingerprint as a target."""

    spec: str
    directory: Path
    gguf_file: str | None
    fingerprint: Fingerprint


def resolve_base(spec: str) -> BaseWeights:
    """`hf:PATH` (a folder of transformers weights or a .gguf file), `llamacpp:smollm2` or `llamacpp:PATH.gguf`
    (that GGUF, loaded into transformers); TargetSpecError for anything else or a path that does not exist."""
    directory, gguf_file = base_location(spec)
    fingerprint = make_target(spec).fingerprint  # hashes the weights
    return BaseWeights(spec, directory, gguf_file, fingerprint)


def _import_training() -> tuple[Any, Any, Any, Any]:
    """torch, transformers, trl and peft, or a MissingExtraError with the install line."""
    try:
        import peft
        import torch
        import transformers
        import trl
    except ImportError as error:
        raise MissingExtraError(f"LoRA SFT needs torch, transformers, trl and peft ({error.name} is missing): "
                                f"{INSTALL_HINT}") from None
    return torch, transformers, trl, peft


def resolve_device(settings: SFTSettings) -> tuple[str, str]:
    """(device, dtype) for the settings on this machine; TrainingSetupError when CUDA is asked for but absent."""
    torch, *_ = _import_training()
    has_cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not has_cuda:
        raise TrainingSetupError("device = cuda, but torch sees no CUDA device")
    device = "cuda" if settings.device == "cuda" or (settings.device == "auto" and has_cuda) else "cpu"
    if settings.dtype != "auto":
        return device, settings.dtype
    return device, "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def load_base(base: BaseWeights, device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer) from local files only, a GGUF dequantized to a plain dense model; TrainingSetupError
    naming the spec when they cannot be loaded or the tokenizer has no chat template."""
    torch, *_ = _import_training()
    model, tokenizer = load_dense(base.spec, base.directory, base.gguf_file, getattr(torch, dtype),
                                  TrainingSetupError, "SFT renders rows with the model's own template")
    return model.to(device), tokenizer


def linear_module_names(model: Any) -> list[str]:
    """The last name part of every linear layer (`q_proj`, `down_proj`, `lm_head`, ...)."""
    torch, *_ = _import_training()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def check_target_modules(model: Any, wanted: list[str] | Literal["all-linear"], spec: str) -> None:
    """TrainingSetupError naming every wanted module that matches no linear layer, and the ones that exist."""
    if wanted == "all-linear":
        return
    torch, *_ = _import_training()
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    missing = [target for target in wanted
               if not any(name == target or name.endswith(f".{target}") for name in linear)]
    if missing:
        raise TrainingSetupError(f"LoRA target module(s) {', '.join(missing)} not found in {spec}; its linear "
                                 f"modules are {', '.join(linear_module_names(model))} (or use all-linear)")


# The corpus.

class ChatRow(NamedTuple):
    """One training chat: the messages before the final assistant turn are the prompt, that turn the completion."""

    line: int
    messages: list[dict[str, str]]


def read_chat_corpus(path: Path) -> list[ChatRow]:
    """Every row of a chat corpus, checked whole; InputFileError naming file, line and field at the first bad one."""
    rows = [ChatRow(line, _chat_messages(row, path, line)) for line, row in json_lines(path)]
    if not rows:
        raise InputFileError("empty corpus: no rows", path=str(path))
    return rows


def _chat_messages(row: Any, path: Path, line: int) -> list[dict[str, str]]:
    def bad(message: str, field: str | None = None) -> InputFileError:
        return InputFileError(message, path=str(path), line=line, field=field)

    if not isinstance(row, dict):
        raise bad(f"expected a JSON object, got {type(row).__name__}")
    if "messages" not in row:
        hint = " (a contrastive pair row: give its file with --contrastive)" if "harmful" in row else ""
        raise bad(f"missing{hint}", "messages")
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise bad("must be a non-empty list of messages", "messages")
    checked = [_message(message, f"messages.{index}", bad) for index, message in enumerate(messages)]
    if checked[-1]["role"] != "assistant":
        raise bad("the last message must be the assistant's reply, which is what SFT learns",
                  f"messages.{len(checked) - 1}.role")
    if not any(message["role"] == "user" for message in checked):
        raise bad("no user message", "messages")
    return checked


def _message(message: Any, field: str, bad: Callable[[str, str | None], InputFileError]) -> dict[str, str]:
    if not isinstance(message, dict):
        raise bad("a message must be an object with 'role' and 'content'", field)
    role = message.get("role")
    if role is None:
        raise bad("missing role", f"{field}.role")
    if role not in ROLES:
        raise bad(f"unknown role {role!r} (known: {', '.join(ROLES)})", f"{field}.role")
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        raise bad("empty content" if isinstance(content, str) or content is None else "content must be a string",
                  f"{field}.content")
    return {"role": role, "content": content}


def corpus_texts(path: Path, rows: Sequence[ChatRow], pairs_path: Path | None = None,
                 pairs: Sequence[ContrastivePair] = ()) -> list[CorpusText]:
    """The user-side texts that the contamination check compares with frozen benches: every user message of a
    chat row, and both prompts of a pair."""
    texts = [CorpusText(str(path), row.line, f"messages.{index}.content", message["content"])
             for row in rows for index, message in enumerate(row.messages) if message["role"] == "user"]
    for pair in pairs:
        texts.append(CorpusText(str(pairs_path), pair.line, "harmful", pair.harmful))
        texts.append(CorpusText(str(pairs_path), pair.line, "lookalike", pair.lookalike))
    return texts


def check_contamination(texts: Sequence[CorpusText], locks: Path, allow: bool,
                        options: ContaminationOptions | None = None) -> ContaminationSummary:
    """Check the texts against every bench frozen in `locks`: ContaminationError on a hit unless `allow`.
    With no bench frozen at all there is nothing to check against; the summary says so in `note`."""
    from refcal.corpus import find_contamination, frozen_benches, sentence_embedding

    if not read_locks(locks):
        return ContaminationSummary.from_report(None, allow, note=f"no frozen bench in {locks}: nothing to check "
                                                                  "against")
    options = options or ContaminationOptions()
    benches = [bench for _, bench in frozen_benches(None, locks)]
    embed, reason = sentence_embedding(options)
    report = find_contamination(texts, benches, options, embed, no_embed_reason=reason)
    if report.hits and not allow:
        raise ContaminationError(report)
    return ContaminationSummary.from_report(report, allow)


# The output folder and resuming.

class RunPlan(BaseModel):
    """What a training run in an output folder was started with (`OUT/checkpoints/run.json`); a later start
    resumes only when all of it is unchanged."""

    base_fingerprint: Fingerprint
    corpus_digest: str
    pairs_digest: str | None
    settings: SFTSettings


RUNTIME_ONLY = {"settings": {"cpu_threads"}}
"""Settings that do not change what is learnt (the loss curve is the same with 1 or 2 threads): a resumed start
may change them."""


def complete_checkpoints(checkpoints: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoint folders, each sorted by step. Complete means its `trainer_state.json`,
    written last by the trainer, parses and names the folder's step."""
    complete, incomplete = [], []
    folders = [path for path in checkpoints.glob(f"{CHECKPOINT_PREFIX}*") if path.is_dir()
               and path.name.removeprefix(CHECKPOINT_PREFIX).isdigit()] if checkpoints.is_dir() else []
    for folder in sorted(folders, key=lambda path: int(path.name.removeprefix(CHECKPOINT_PREFIX))):
        try:
            state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
            done = state["global_step"] == int(folder.name.removeprefix(CHECKPOINT_PREFIX))
        except (OSError, ValueError, KeyError, TypeError):
            done = False
        (complete if done else incomplete).append(folder)
    return complete, incomplete


def check_output(out: Path, plan: RunPlan) -> Path | None:
    """The checkpoint to resume from (None for a fresh start); TrainingSetupError when `out` holds a finished
    training, another run, or files that are not a training run's."""
    if (out / RECEIPT_NAME).exists():
        raise TrainingSetupError(f"{out} already holds a finished training ({RECEIPT_NAME}); choose another --out")
    if out.exists() and not out.is_dir():
        raise TrainingSetupError(f"{out} is a file; --out names a folder")
    run_file = out / CHECKPOINTS / RUN_FILE
    if not run_file.exists():
        if out.exists() and any(out.iterdir()):
            raise TrainingSetupError(f"{out} is not empty and holds no training run to resume; choose another --out")
        return None
    try:
        previous = RunPlan.model_validate_json(run_file.read_bytes())
    except ValidationError as error:
        raise TrainingSetupError(f"{run_file} cannot be read ({error.errors()[0]['msg']}); choose another --out") \
            from None
    differences = _differences(previous.model_dump(mode="json", exclude=RUNTIME_ONLY),
                               plan.model_dump(mode="json", exclude=RUNTIME_ONLY))
    if differences:
        raise TrainingSetupError(f"{out} holds a run started with other inputs ({', '.join(differences)} changed); "
                                 "resume with the same base, corpus and settings, or choose another --out")
    complete, _ = complete_checkpoints(out / CHECKPOINTS)
    return complete[-1] if complete else None


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [difference for key in sorted(old.keys() | new.keys())
                for difference in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if old != new else []


# Preparing.

@dataclass
class SFTJob:
    """Everything `run_sft` needs, checked: nothing has been written yet."""

    base: BaseWeights
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
    _import_training()
    rows = read_chat_corpus(corpus)
    pair_rows = read_pairs(pairs) if pairs is not None else []
    weights = resolve_base(base)
    corpus_info = CorpusInfo(path=str(corpus), digest=file_digest(corpus), rows=len(rows))
    pairs_info = CorpusInfo(path=str(pairs), digest=file_digest(pairs), rows=len(pair_rows)) if pairs else None
    plan = RunPlan(base_fingerprint=weights.fingerprint, corpus_digest=corpus_info.digest,
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
    corpus_info = corpus_info.model_copy(update=_length_counts(tokenizer, rows, settings.max_length, corpus))
    return SFTJob(weights, corpus, corpus_info, rows, pairs, pairs_info, pair_rows, summary, settings, out, plan,
                  resume_from, device, dtype, model, tokenizer, time.perf_counter() - started, readiness)


def _check_contrastive_layer(model: Any, settings: ContrastiveSettings) -> None:
    try:
        check_layer(model, settings)
    except ValueError as error:
        raise TrainingSetupError(str(error)) from None


def _length_counts(tokenizer: Any, rows: Sequence[ChatRow], max_length: int, path: Path) -> dict[str, int]:
    """How many rows `max_length` cuts, and how many it leaves without a completion token (TRL drops those);
    TrainingSetupError when that is every row."""
    truncated = dropped = 0
    for row in rows:
        prompt = tokenizer.apply_chat_template(row.messages[:-1], add_generation_prompt=True, return_dict=False)
        whole = tokenizer.apply_chat_template(row.messages, return_dict=False)
        truncated += len(whole) > max_length
        dropped += len(prompt) >= max_length
    if dropped == len(rows):
        raise TrainingSetupError(f"every prompt in {path} fills max_length = {max_length} tokens: nothing is left "
                                 "to learn; raise max_length")
    return {"truncated": truncated, "dropped": dropped}


# Training.

class AdapterInfo(NamedTuple):
    """The LoRA adapter as attached, recorded before the merge removes it."""

    target_modules: list[str]
    trainable_parameters: int
    cpu_threads: int | None


def run_sft(job: SFTJob, progress: Progress | None = None, callbacks: Sequence[Any] = ()
            ) -> TrainingReceipt[SFTSettings]:
    """Train (resuming from `job.resume_from` when set), merge, save and write the receipt; returns it. A job
    runs once: its model gets the adapter attached and merged.

    `callbacks` are extra transformers TrainerCallbacks for the SFT stage. A failure or a kill at any point
    leaves the last complete checkpoint in place: the same call with the same inputs resumes from it.
    """
    torch, transformers, _, peft = _import_training()
    started_at, started = utc_now(), time.perf_counter()
    checkpoints = job.out / CHECKPOINTS
    write_atomic(checkpoints / RUN_FILE, job.plan.model_dump_json(indent=2) + "\n")
    for folder in complete_checkpoints(checkpoints)[1]:
        shutil.rmtree(folder)  # half-written (a kill or a full disk mid-save); the trainer would trip on it
    timings = {"load": round(job.load_seconds, 2)}
    with cpu_threads(job.settings.cpu_threads if job.device == "cpu" else None):
        transformers.set_seed(job.settings.seed)
        with warnings.catch_warnings():  # peft reads transformers' deprecated `is_gradient_checkpointing`
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            model = peft.get_peft_model(job.model, lora_config(peft, job.settings))
        adapter = AdapterInfo(sorted(model.peft_config["default"].target_modules),
                              sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad),
                              torch.get_num_threads() if job.device == "cpu" else None)
        contrastive_curve = _contrastive_stage(job, model, progress, timings)
        trainer, timings["sft"] = _sft_stage(job, model, progress, callbacks)
        weights_digest, timings["merge"] = _merge_and_save(model, job.tokenizer, job.out)
    timings["total"] = round(time.perf_counter() - started + job.load_seconds, 2)
    receipt = sealed(_receipt(job, adapter, trainer, contrastive_curve, timings, started_at, weights_digest))
    write_training_receipt(receipt, job.out)
    return receipt


def lora_config(peft: Any, settings: SFTSettings) -> Any:
    return peft.LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                           target_modules=settings.target_modules, bias="none", task_type="CAUSAL_LM")


def _contrastive_stage(job: SFTJob, model: Any, progress: Progress | None, timings: dict[str, float]) -> Curve:
    """Run the contrastive stage once per output folder: its adapter and curve are saved in
    `checkpoints/contrastive` and reused by a resumed start (an SFT checkpoint already holds its weights)."""
    if not job.pairs:
        return []
    saved = job.out / CHECKPOINTS / CONTRASTIVE_DIR
    curve_file = saved / "curve.json"
    if curve_file.exists():
        if job.resume_from is None:  # no SFT checkpoint yet: the adapter starts from the contrastive weights
            model.load_adapter(str(saved), "default", is_trainable=True)
        return [(int(step), float(loss)) for step, loss in json.loads(curve_file.read_text(encoding="utf-8"))]
    started = time.perf_counter()
    report = None if progress is None else lambda step, total, loss: progress("contrastive", step, total, loss)
    curve = train_contrastive(model, job.tokenizer, job.pairs, job.settings.contrastive, job.settings.seed, report)
    staging = saved.with_name(f".{CONTRASTIVE_DIR}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    (staging / "curve.json").write_text(json.dumps(curve) + "\n", encoding="utf-8")
    os.replace(staging, saved)
    timings["contrastive"] = round(time.perf_counter() - started, 2)
    return curve


def _sft_stage(job: SFTJob, model: Any, progress: Progress | None, callbacks: Sequence[Any]) -> tuple[Any, float]:
    """The SFTTrainer run; returns the trainer (its state holds the loss history) and its wall time."""
    _, transformers, trl, _ = _import_training()
    import datasets

    dataset = datasets.Dataset.from_list([{"prompt": row.messages[:-1], "completion": row.messages[-1:]}
                                          for row in job.rows])
    with _quiet_datasets(datasets):
        trainer = trl.SFTTrainer(model=model, args=sft_config(trl, job), train_dataset=dataset,
                                 processing_class=job.tokenizer)
    for default in (transformers.PrinterCallback, transformers.ProgressCallback):
        trainer.remove_callback(default)
    if progress is not None:
        trainer.add_callback(progress_callback(transformers, progress))
    for callback in callbacks:
        trainer.add_callback(callback)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(job.resume_from) if job.resume_from else None)
    return trainer, round(time.perf_counter() - started, 2)


def sft_config(trl: Any, job: SFTJob) -> Any:
    """TRL's SFTConfig for the job. TRL's own defaults differ from transformers' (bf16 on, gradient
    checkpointing on), so every one that matters here is set."""
    settings = job.settings
    return trl.SFTConfig(
        output_dir=str(job.out / CHECKPOINTS),
        num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size, gradient_accumulation_steps=settings.gradient_accumulation,
        learning_rate=settings.learning_rate, lr_scheduler_type=settings.scheduler, warmup_steps=settings.warmup,
        weight_decay=settings.weight_decay, max_length=settings.max_length, completion_only_loss=True,
        assistant_only_loss=False, packing=False, seed=settings.seed, data_seed=settings.seed,
        save_strategy="steps", save_steps=settings.save_steps, save_total_limit=2, save_only_model=False,
        logging_strategy="steps", logging_steps=settings.logging_steps, report_to="none", disable_tqdm=True,
        use_cpu=job.device == "cpu", bf16=job.dtype == "bfloat16", fp16=False,
        activation_checkpointing=settings.gradient_checkpointing, dataloader_num_workers=0,
        dataloader_pin_memory=job.device == "cuda")


@contextlib.contextmanager
def _quiet_datasets(datasets: Any) -> Iterator[None]:
    """No `datasets` progress bars while TRL tokenizes a corpus of a few rows; restored afterwards."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def progress_callback(transformers: Any, progress: Progress) -> Any:
    """A TrainerCallback reporting each SFT step with the latest logged loss. A step that is logged is reported
    from `on_log`, once its loss is known."""

    class ReportProgress(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress("sft", state.global_step, state.max_steps, None)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % args.logging_steps:
                progress("sft", state.global_step, state.max_steps, self.loss)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])
                progress("sft", state.global_step, state.max_steps, self.loss)

    return ReportProgress()


def _merge_and_save(model: Any, tokenizer: Any, out: Path) -> tuple[str, float]:
    """Merge the adapter, save weights and tokenizer into a staging folder, then move them into `out` with
    `config.json` last (transformers cannot load a folder without it). Returns (weights digest, seconds)."""
    from refcal.targets.weights import weights_digest

    started = time.perf_counter()
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    try:
        merged = model.merge_and_unload()
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        (out / "config.json").unlink(missing_ok=True)  # a model from an earlier, unreceipted start is incomplete now
        for file in sorted(staging.iterdir(), key=lambda path: path.name == "config.json"):
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return weights_digest(out), round(time.perf_counter() - started, 2)


def loss_curve(log_history: Sequence[Mapping[str, Any]]) -> Curve:
    """(step, loss) of every training log entry (a resumed run's history includes the steps before the kill)."""
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry and "step" in entry]


def _receipt(job: SFTJob, adapter: AdapterInfo, trainer: Any, contrastive_curve: Curve, timings: dict[str, float],
             started_at: str, weights_digest: str) -> TrainingReceipt[SFTSettings]:
    torch, *_ = _import_training()
    device = "cpu" if job.device == "cpu" else f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return TrainingReceipt[SFTSettings](
        kind="sft", base=job.base.spec, base_fingerprint=job.base.fingerprint, corpus=job.corpus,
        pairs=job.pairs_corpus, contamination=job.contamination, hyperparameters=job.settings,
        target_modules=adapter.target_modules, trainable_parameters=adapter.trainable_parameters,
        steps=trainer.state.global_step, resumed_from=job.resume_from.name if job.resume_from else None,
        loss_curve=loss_curve(trainer.state.log_history), contrastive_loss_curve=contrastive_curve,
        wall_time_s=timings,
        runtime=RuntimeInfo(device=device, dtype=job.dtype, cpu_threads=adapter.cpu_threads,
                            libraries=library_versions()),
        started_at=started_at, finished_at=utc_now(), output=str(job.out), weights_digest=weights_digest,
        readiness=job.readiness)
