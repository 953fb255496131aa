"""Training an SFT job: the LoRA adapter attached, the contrastive stage (once per folder), TRL's SFTTrainer with
checkpoints and progress, then the merge and the training receipt."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from refcal.clock import utc_now
from refcal.files import write_atomic
from refcal.recal.contrastive import Curve, train_contrastive
from refcal.recal.receipt import RuntimeInfo, TrainingReceipt, library_versions, sealed, write_training_receipt
from refcal.recal.sft.model import import_training
from refcal.recal.sft.output import CHECKPOINTS, CONTRASTIVE_DIR, RUN_FILE, complete_checkpoints
from refcal.recal.sft.prepare import SFTJob
from refcal.recal.sft.save import merge_and_save
from refcal.recal.sft.settings import SFTSettings
from refcal.targets.weights import cpu_threads

Stage = Literal["contrastive", "sft"]
Progress = Callable[[Stage, int, int, float | None], None]
"""Told (stage, step, total steps, latest loss or None) as training advances; the first call of a stage may come
with a step above 0 when it resumes."""


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
    torch, transformers, _, peft = import_training()
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
        weights_digest, timings["merge"] = merge_and_save(model, job.tokenizer, job.out)
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
    _, transformers, trl, _ = import_training()
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


def loss_curve(log_history: Sequence[Mapping[str, Any]]) -> Curve:
    """(step, loss) of every training log entry (a resumed run's history includes the steps before the kill)."""
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry and "step" in entry]


def _receipt(job: SFTJob, adapter: AdapterInfo, trainer: Any, contrastive_curve: Curve, timings: dict[str, float],
             started_at: str, weights_digest: str) -> TrainingReceipt[SFTSettings]:
    torch, *_ = import_training()
    device = "cpu" if job.device == "cpu" else f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return TrainingReceipt[SFTSettings](
        kind="sft", base=job.base.spec, base_fingerprint=job.base_fingerprint, corpus=job.corpus,
        pairs=job.pairs_corpus, contamination=job.contamination, hyperparameters=job.settings,
        target_modules=adapter.target_modules, trainable_parameters=adapter.trainable_parameters,
        steps=trainer.state.global_step, resumed_from=job.resume_from.name if job.resume_from else None,
        loss_curve=loss_curve(trainer.state.log_history), contrastive_loss_curve=contrastive_curve,
        wall_time_s=timings,
        runtime=RuntimeInfo(device=device, dtype=job.dtype, cpu_threads=adapter.cpu_threads,
                            libraries=library_versions()),
        started_at=started_at, finished_at=utc_now(), output=str(job.out), weights_digest=weights_digest,
        readiness=job.readiness)
