"""`refcal recal sft`: LoRA SFT (after an optional contrastive stage) of a base on a corpus; the merged model is
then drilled again like any target.

    refcal recal sft --base TARGET --corpus FILE --out DIR [--contrastive PAIRS] [--config SETTINGS.toml]
                     [--allow-contamination] [--locks DIR] [--max-steps N] [--epochs E] [--learning-rate LR]
                     [--batch-size B] [--lora-rank R] [--target-modules a,b] [--seed S] [--save-steps N]
                     [--device auto|cpu|cuda] [--threads N] [--force]

Training needs a base that `refcal recal check BASE` found ready (the verdict is looked up by the base's weights
digest beside the run database); `--force` trains a base that is not ready or was never checked, and the
receipt says so.

Settings come from the defaults, then the TOML file, then the flags. Every check runs before the first step; the
same command run again after a kill resumes from the last checkpoint.

Exit codes: 0 trained; 2 bad input (a corpus row, a setting, the base spec or load, a LoRA target module, an
output folder that belongs to another run, contamination); 130 interrupted (run the same command to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from refcal.bench.freeze import DEFAULT_LOCKS
from refcal.cli.common import DEFAULT_STORE, LocksOption, StoreOption, console, errors_console, fail
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_INTERRUPTED
from refcal.cli.progress import training_display
from refcal.cli.recal_check import readiness_gate
from refcal.errors import InputFileError, MissingExtraError, TargetSpecError

sft_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `sft` to the `refcal recal` group."""
    parent.add_typer(sft_app)


@sft_app.command("sft")
def sft_command(
    base: Annotated[str, typer.Option(help="Base model: hf:PATH (folder or .gguf), llamacpp:smollm2 or "
                                           "llamacpp:PATH.gguf.")],
    corpus: Annotated[Path, typer.Option(help="Chat-format JSONL: `messages` ending with the assistant's reply.")],
    out: Annotated[Path, typer.Option(help="Output folder: the merged model (load it as hf:OUT), checkpoints and "
                                           "the training receipt.")],
    contrastive: Annotated[Path | None, typer.Option(help="Pairs JSONL (`harmful`, `lookalike`): run the "
                                                          "contrastive stage before SFT.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file of settings (any SFTSettings field; "
                                                     "[contrastive] as a table).")] = None,
    allow_contamination: Annotated[bool, typer.Option(help="Train even if the corpus meets a frozen bench "
                                                           "(written into the receipt).")] = False,
    locks: LocksOption = DEFAULT_LOCKS,
    force: Annotated[bool, typer.Option(help="Train a base that `refcal recal check` found not ready, or never "
                                             "checked (written into the receipt).")] = False,
    store: StoreOption = DEFAULT_STORE,
    max_steps: Annotated[int | None, typer.Option(help="Optimiser steps (overrides epochs).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the corpus (default 1).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate (default 2e-4).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows per step (default 4).")] = None,
    lora_rank: Annotated[int | None, typer.Option(help="LoRA rank (default 16; alpha stays 32 unless set in "
                                                       "--config).")] = None,
    target_modules: Annotated[str | None, typer.Option(help="Comma-separated module names, or all-linear "
                                                            "(default).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation, data order and dropout (default 0).")]
        = None,
    save_steps: Annotated[int | None, typer.Option(help="A checkpoint every N steps (default 50).")] = None,
    device: Annotated[str | None, typer.Option(help="auto (default), cpu or cuda; bf16 on CUDA.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads on CPU (default: one per core; 1 on a busy "
                                                     "machine).")] = None,
) -> None:
    """LoRA SFT with TRL (loss on the assistant's reply only), optionally after the contrastive stage; merges the
    adapter and saves a model that `refcal drill --target hf:OUT` can drill."""
    from refcal.recal.readiness import NotReadyError
    from refcal.recal.sft import ContaminationError, TrainingSetupError, load_settings, prepare_sft, run_sft

    modules = None
    if target_modules is not None:
        modules = "all-linear" if target_modules == "all-linear" else [
            name.strip() for name in target_modules.split(",") if name.strip()]
    overrides = {"max_steps": max_steps, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
                 "lora_rank": lora_rank, "target_modules": modules, "seed": seed, "save_steps": save_steps,
                 "device": device, "cpu_threads": threads}
    try:
        settings = load_settings(config, overrides)
        gate = readiness_gate(base, store, force)
        console.print(f"checking {escape(str(corpus))} and loading {escape(base)}…", highlight=False)
        job = prepare_sft(base, corpus, out, settings, pairs=contrastive, allow_contamination=allow_contamination,
                          locks=locks, readiness=gate)
    except ContaminationError as error:
        from refcal.cli.corpus_check import print_report

        print_report(error.report, show=10)
        raise fail(str(error), EXIT_INPUT) from None
    except (InputFileError, TargetSpecError, MissingExtraError, TrainingSetupError, NotReadyError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    _print_plan(job)
    try:
        with training_display() as progress:
            receipt = run_sft(job, progress)
    except KeyboardInterrupt:
        raise fail(f"interrupted; run the same command again to resume from the last checkpoint in "
                   f"{out / 'checkpoints'}", EXIT_INTERRUPTED) from None
    _print_result(receipt)


def _print_plan(job: Any) -> None:
    """What was checked, and where training starts."""
    contamination = job.contamination
    if contamination.note:
        errors_console.print(f"[yellow]contamination check:[/yellow] {escape(contamination.note)}", highlight=False)
    elif contamination.hits:
        errors_console.print(f"[yellow]contamination allowed:[/yellow] {contamination.hits} hit(s) against "
                             f"{escape(', '.join(contamination.benches))} (recorded in the receipt)", highlight=False)
    else:
        console.print(f"contamination: clean against {', '.join(contamination.benches)}", highlight=False,
                      markup=False)
    corpus = job.corpus
    if corpus.truncated or corpus.dropped:
        errors_console.print(f"[yellow]max_length {job.settings.max_length}:[/yellow] {corpus.truncated} row(s) cut, "
                             f"{corpus.dropped} left out", highlight=False)
    start = f"resuming from {job.resume_from.name}" if job.resume_from else "starting"
    console.print(f"{start}: {corpus.rows} rows, {len(job.pairs)} pairs, device {job.device} ({job.dtype})",
                  highlight=False, markup=False)


def _print_result(receipt: Any) -> None:
    curve = receipt.loss_curve
    if curve:
        console.print(f"SFT: {receipt.steps} steps, loss {curve[0][1]:.3f} → {curve[-1][1]:.3f}", highlight=False)
    if receipt.contrastive_loss_curve:
        first, last = receipt.contrastive_loss_curve[0][1], receipt.contrastive_loss_curve[-1][1]
        console.print(f"contrastive: {len(receipt.contrastive_loss_curve)} steps, loss {first:.3f} → {last:.3f}",
                      highlight=False)
    console.print(f"wall time {receipt.wall_time_s['total']:.0f} s; model → {escape(receipt.output)} "
                  f"(drill it with --target hf:{escape(receipt.output)})", highlight=False)


