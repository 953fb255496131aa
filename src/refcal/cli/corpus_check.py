"""`refcal corpus check`: does a training corpus meet a frozen bench? (and `print_report`, which `recal sft` uses)

    refcal corpus check CORPUS… [--against NAME|LOCK]… [--locks DIR] [--near 0.8] [--template 0.9]
                        [--cosine 0.84] [--semantic/--no-semantic] [--max-hits 0] [--json OUT] [--show N]

Exit codes: 0 at most --max-hits hits; 1 more hits than that; 2 bad input (a malformed corpus line, a lock
that cannot be read, a frozen bench that changed, --semantic without the embedding model).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from refcal.bench.freeze import DEFAULT_LOCKS
from refcal.cli.common import LocksOption, console, errors_console, fail
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_NO, EXIT_OK
from refcal.corpus import KINDS, ContaminationOptions, ContaminationReport, Hit, check_corpus
from refcal.corpus.contamination import Progress as ProgressCallback
from refcal.errors import InputFileError, MissingExtraError
from refcal.files import write_atomic

SHOWN_CHARACTERS = 400
"""A text longer than this is cut on the terminal; --json keeps it whole."""
KIND_STYLES = {"exact": "red", "near": "red", "template": "yellow", "semantic": "magenta"}
DEFAULTS = ContaminationOptions()

check_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `check` to the `refcal corpus` group."""
    parent.add_typer(check_app)


@check_app.command("check")
def corpus_check(
    corpus: Annotated[list[Path], typer.Argument(help="Corpus files (JSONL: chat `messages`, `prompt`/`completion` "
                                                      "or `text` rows).")],
    against: Annotated[list[str] | None, typer.Option("--against", help="Frozen bench name or .lock.json path; "
                                                                        "repeat or separate by commas (default: "
                                                                        "every lock in --locks).")] = None,
    locks: LocksOption = DEFAULT_LOCKS,
    near: Annotated[float, typer.Option(min=0.0, max=1.0, help="Near duplicates: Jaccard of character 3-grams.")]
        = DEFAULTS.near,
    template: Annotated[float, typer.Option(min=0.0, max=1.0, help="Same template, other fillers: Jaccard of "
                                                                   "skeletons.")] = DEFAULTS.template,
    cosine: Annotated[float, typer.Option(min=0.0, max=1.0, help="Semantic near-neighbours: cosine of MiniLM "
                                                                 "embeddings.")] = DEFAULTS.cosine,
    semantic: Annotated[bool | None, typer.Option("--semantic/--no-semantic", help="Run the semantic layer "
                                                                                   "(default: when torch is "
                                                                                   "installed; --semantic fails "
                                                                                   "without it).")] = None,
    max_hits: Annotated[int, typer.Option(min=0, help="Hits allowed before the exit code is 1.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole report (every hit) as JSON.")]
        = None,
    show: Annotated[int | None, typer.Option(min=0, help="Print at most N hits of each kind (default: all).")]
        = None,
) -> None:
    """Find exact, near, templated and semantic duplicates of frozen bench items in training corpora."""
    names = [name.strip() for value in against or [] for name in value.split(",") if name.strip()] or None
    try:
        options = ContaminationOptions(near=near, template=template, cosine=cosine,
                                       semantic="auto" if semantic is None else "on" if semantic else "off")
        with _semantic_progress() as progress:
            report = check_corpus(corpus, names, locks, options, progress)
    except ValidationError as error:
        first = error.errors()[0]
        raise fail(f"--{first['loc'][0]}: {first['msg']}", EXIT_INPUT) from None
    except (InputFileError, MissingExtraError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    print_report(report, show)
    if json_out is not None:
        write_atomic(json_out, report.model_dump_json(indent=2) + "\n")
        console.print(f"report → {json_out}", highlight=False, markup=False)
    exceeded = report.exceeds(max_hits)
    verdict = (f"[red]CONTAMINATED[/red]: {len(report.hits)} hits, more than --max-hits {max_hits}" if exceeded
               else f"[green]clean[/green]: {len(report.hits)} hits (at most {max_hits} allowed)")
    console.print(verdict, highlight=False)
    raise typer.Exit(EXIT_NO if exceeded else EXIT_OK)


def print_report(report: ContaminationReport, show: int | None = None) -> None:
    """Each hit with both texts, then counts and timings per layer, then what did not run and why."""
    shown = dict.fromkeys(KINDS, 0)
    for hit in report.hits:
        shown[hit.kind] += 1
        if show is None or shown[hit.kind] <= show:
            _print_hit(hit)
    benches = ", ".join(f"{bench.name} ({bench.items} items)" for bench in report.benches)
    console.print(f"{report.corpus_texts:,} corpus texts ({report.distinct_corpus_texts:,} distinct) from "
                  f"{len(report.corpus_files)} file(s) against {benches}", highlight=False, markup=False,
                  soft_wrap=True)
    table = Table("layer", "hits", "threshold", "seconds")
    thresholds = {"exact": "normalised equal", "near": f"Jaccard ≥ {report.options.near}",
                  "template": f"skeleton Jaccard ≥ {report.options.template}",
                  "semantic": f"cosine ≥ {report.options.cosine}"}
    for kind in KINDS:
        seconds = "skipped" if kind in report.skipped else f"{report.timings.get(kind, 0.0):.2f}"
        table.add_row(kind, str(report.counts[kind]), thresholds[kind], seconds)
    table.add_row("total", str(len(report.hits)), "", f"{report.timings['total']:.2f}")
    console.print(table)
    classes = Counter(f"{hit.bench}/{hit.item_class}" for hit in report.hits if hit.kind == "template")
    if classes:
        console.print("templated rows by bench class: " + ", ".join(f"{name} {count}" for name, count
                                                                    in classes.most_common()),
                      highlight=False, markup=False, soft_wrap=True)
    hidden = {kind: count - show for kind, count in shown.items() if show is not None and count > show}
    if hidden:
        console.print("not printed: " + ", ".join(f"{count} {kind}" for kind, count in hidden.items())
                      + " (all are in --json)", highlight=False)
    for layer, reason in report.skipped.items():
        errors_console.print(f"[yellow]{layer} layer skipped:[/yellow] {escape(reason)}", highlight=False)


def _print_hit(hit: Hit) -> None:
    """Built as Text, never markup: ids, classes and texts come from users' files."""
    header = Text.assemble((hit.kind, f"bold {KIND_STYLES[hit.kind]}"),
                           f" {hit.score:.2f}  {hit.corpus_path}:{hit.corpus_line} ({hit.corpus_field}) ↔ "
                           f"{hit.bench}/{hit.item_id} [{hit.item_class}]")
    if hit.template:
        header.append(f", template '{hit.template}'")
    if hit.also_matched:
        header.append(f", +{hit.also_matched} more item(s)")
    for line in (header, f"    corpus │ {_shorten(hit.corpus_text)}", f"    bench  │ {_shorten(hit.item_text)}"):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= SHOWN_CHARACTERS:
        return flat
    return f"{flat[:SHOWN_CHARACTERS]}… (+{len(flat) - SHOWN_CHARACTERS} characters)"


@contextlib.contextmanager
def _semantic_progress() -> Iterator[ProgressCallback | None]:
    """A progress bar for the semantic layer on a terminal; nothing in pipes and CI."""
    if not errors_console.is_terminal:
        yield None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=errors_console, transient=True)
    tasks: dict[str, int] = {}

    def advance(layer: str, done: int, total: int) -> None:
        if layer not in tasks:
            tasks[layer] = bar.add_task(f"{layer}: embedding", total=total)
        bar.update(tasks[layer], completed=done)

    with bar:
        yield advance
