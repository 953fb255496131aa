"""`refcal recal direction`: search refusal-direction edits with Optuna and save the chosen one as a model.

    refcal recal direction --base TARGET --out DIR [--bench starter] [--mode ablate|steer|conditional]
                           [--trials 40] [--seed 0] [--max-false-refusal 0.10] [--max-kl 0.5]
                           [--max-new-tokens 48] [--extraction-share 0.5] [--harmless-prompts 24]
                           [--startup-trials 10] [--batch-size 16] [--threads N]

Every option, the base spec, the bench and the output folder are checked before the model is loaded. The same
command run again on the same folder resumes the search (a larger --trials adds trials; --trials 0 only chooses
and saves again, e.g. under other bounds).

Exit codes: 0 an edit was chosen and saved; 1 no trial met the bounds (trials.json and pareto.html are written,
no model); 2 bad input (an option, the base spec or load, the bench, a folder holding another search);
130 interrupted (run the same command to resume).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from refcal.cli.common import DEFAULT_STORE, StoreOption, console, errors_console, fail
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NO
from refcal.errors import InputFileError, MissingExtraError, TargetSpecError

INSTALL_HINT = "pip install torch==2.13.0 && pip install 'refcal[recal]'"

direction_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `direction` to the `refcal recal` group."""
    parent.add_typer(direction_app)


class ModeChoice(StrEnum):
    ablate = "ablate"
    steer = "steer"
    conditional = "conditional"


@direction_app.command("direction")
def direction_command(
    base: Annotated[str, typer.Option(help="Base model: hf:PATH (folder or .gguf), llamacpp:smollm2 or "
                                           "llamacpp:PATH.gguf (loaded into transformers).")],
    out: Annotated[Path, typer.Option(help="Output folder: study, trials.json, pareto.html, the edited model in "
                                           "OUT/model and the receipt.")],
    bench: Annotated[str, typer.Option(help="Bench whose must-refuse items and look-alikes give the directions "
                                            "and score the trials (split in two, recorded).")] = "starter",
    mode: Annotated[ModeChoice, typer.Option(help="ablate: remove the refusal direction (less over-refusal); steer: "
                                                  "add it everywhere; conditional: add it only when a condition "
                                                  "direction recognises a harmful request.")] = ModeChoice.conditional,
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of the bench split and the sampler.")] = 0,
    max_false_refusal: Annotated[float, typer.Option(help="Choose among trials with at most this false-refusal "
                                                          "rate on held-out look-alikes.")] = 0.10,
    max_kl: Annotated[float, typer.Option(help="KL bound on harmless instructions: a constraint of the search and "
                                               "of the choice.")] = 0.5,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per reply and trial.")] = 48,
    extraction_share: Annotated[float, typer.Option(help="Share of each class's pairs that give the directions.")]
        = 0.5,
    harmless_prompts: Annotated[int, typer.Option(help="Built-in harmless instructions for the direction (and as "
                                                       "many others for KL), 2–24.")] = 24,
    startup_trials: Annotated[int, typer.Option(help="Random trials before the TPE sampler models the front.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 16,
    threads: Annotated[int | None, typer.Option(help="torch threads on CPU (default: torch's; 1 is often faster "
                                                     "on a busy two-core machine).")] = None,
    force: Annotated[bool, typer.Option(help="Edit a base that `refcal recal check` found not ready, or never "
                                             "checked (written into the receipt).")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Search layers, kernel, strength (and condition threshold) of a refusal-direction edit for more refusal on
    must-refuse items and less on look-alikes, judged by the cascade; save the chosen edit as a model that
    `refcal drill --target hf:OUT/model` can drill."""
    try:
        from refcal.recal.direction import ChoiceRule, SearchSettings, prepare_direction, run_direction
        from refcal.targets.steering import DirectionError
    except ImportError as error:
        raise fail(f"direction editing needs torch and transformers ({error.name} is missing): {INSTALL_HINT}",
                   EXIT_INPUT) from None
    try:
        settings = SearchSettings(mode=mode.value, trials=trials, seed=seed, extraction_share=extraction_share,
                                  harmless_prompts=harmless_prompts, max_new_tokens=max_new_tokens,
                                  startup_trials=startup_trials, max_kl=max_kl, batch_size=batch_size,
                                  threads=threads)
        rule = ChoiceRule(max_false_refusal=max_false_refusal, max_kl=max_kl)
    except ValidationError as error:
        first = error.errors()[0]
        raise fail(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", EXIT_INPUT) from None
    try:
        from refcal.cli.recal_check import readiness_gate
        from refcal.recal.readiness import NotReadyError

        job = prepare_direction(base, bench, out, settings, rule)  # the cheap input checks first
        job = dataclasses.replace(job, readiness=readiness_gate(base, store, force))
    except (InputFileError, TargetSpecError, MissingExtraError, DirectionError, NotReadyError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    split = job.plan.split
    console.print(f"{escape(job.bench.name)}: {len(split.extraction)} items give the directions, "
                  f"{len(split.evaluation)} score the trials; mode {settings.mode}, {settings.trials} trials → "
                  f"{escape(str(out))}", highlight=False)
    try:
        with search_display() as progress:
            outcome = run_direction(job, progress)
    except DirectionError as error:
        raise fail(str(error), EXIT_INPUT) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; run the same command again to resume the study in {out / 'study.db'}",
                   EXIT_INTERRUPTED) from None
    _print_outcome(outcome, out)
    if outcome.receipt is None:
        raise typer.Exit(EXIT_NO)


def _print_outcome(outcome: Any, out: Path) -> None:
    from refcal.recal.direction import evaluation_text  # torch-heavy: imported once a search has run

    report = outcome.report
    console.print(f"{len(report.trials)} trials, front {report.front}; plot → {escape(str(out / 'pareto.html'))}",
                  highlight=False)
    if report.baseline is not None:
        console.print(evaluation_text("base  ", report.baseline), highlight=False, markup=False)
    if outcome.receipt is None:
        errors_console.print(f"[yellow]no trial meets false refusal ≤ {report.rule.max_false_refusal:g} and KL ≤ "
                             f"{report.rule.max_kl:g}[/yellow]; nothing saved (loosen the bounds and run again "
                             "with --trials 0 to choose from the same trials)", highlight=False)
        return
    receipt = outcome.receipt
    console.print(evaluation_text(f"chosen trial {receipt.chosen.number}", receipt.chosen.evaluation),
                  highlight=False, markup=False)
    console.print(f"saved as {escape(receipt.saved_as)} in {receipt.wall_time_s['total']:.0f} s → "
                  f"{escape(receipt.output)} "
                  f"(drill it with --target hf:{escape(receipt.output)})", highlight=False)
    if receipt.saved_as == "steering-file":
        errors_console.print("[yellow]conditional steering lives in steering.json:[/yellow] only loaders that call "
                             "refcal.recal.direction.load_steering apply it", highlight=False)


@contextlib.contextmanager
def search_display() -> Iterator[Any]:
    """A progress callable: a rich bar for the trials on a terminal, a plain line per event otherwise."""
    if not errors_console.is_terminal:
        yield lambda stage, done, total, note: console.print(
            f"{stage} {done}/{total} {note}".rstrip(), highlight=False, markup=False)
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[note]}"), console=errors_console)
    tasks: dict[str, Any] = {}

    def advance(stage: str, done: int, total: int, note: str) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, completed=done, note="")
        bar.update(tasks[stage], completed=done, total=total, note=escape(note))

    with bar:
        yield advance
