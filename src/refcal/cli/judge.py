"""`refcal judge`: judge a response file, or measure a judge against human labels.

    refcal judge IN.jsonl --out OUT.jsonl [--lane L]
    refcal judge eval --labels FILE [--lane L] [--by model --by type]
    refcal judge eval --reviewed [--run RUN] [--lane L]      (labels from `refcal review`, in the store)
    refcal judge train --labels FILE [--reviewed] --out HEAD.npz
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from refcal.cli.common import console, fail
from refcal.cli.exit_codes import EXIT_INPUT
from refcal.errors import InputFileError, RefcalError
from refcal.files import write_atomic
from refcal.judges import DEFAULT_JUDGE, JUDGES, Judge, Verdict, make_judge
from refcal.judges.agreement import Agreement, agreement, agreement_by, side_errors
from refcal.judges.base import judge_rows
from refcal.judges.labels import ResponseRow, read_rows
from refcal.judges.llm import make_judge_target
from refcal.records import MeasuredAgreement
from refcal.store.runs import Store


class _DefaultToFile(TyperGroup):
    """`refcal judge IN.jsonl ...` runs the `file` command; `eval` stays a subcommand."""

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["file", *args]
        return super().resolve_command(ctx, args)


judge_app = typer.Typer(cls=_DefaultToFile, no_args_is_help=True,
                        help="Judge a response file (refcal judge IN.jsonl --out OUT.jsonl), or `eval` a lane.")


def register(parent: typer.Typer) -> None:
    """Add the `judge` group to the `refcal` app."""
    parent.add_typer(judge_app, name="judge")

LaneOption = Annotated[str, typer.Option("--lane", help=f"Judge: {', '.join(JUDGES)} (llm needs --judge-target; "
                                                      "the cascade uses one when given).")]
JudgeTargetOption = Annotated[str | None, typer.Option("--judge-target", help="Target spec that plays the llm "
                                                                            "lane's judge.")]
HeadOption = Annotated[Path | None, typer.Option("--head", help="Head file (.npz) for the head and cascade "
                                                                "(default: the shipped head).")]


def _verdicts(rows: list[ResponseRow], lane: str, judge_target: str | None,
              head: Path | None = None) -> tuple[Judge, list[Verdict]]:
    """Judge every row. Head and cascade embed all rows in batches; a judge target is started once and
    its calls run concurrently."""
    pairs = [(row.prompt, row.response) for row in rows]
    if lane == "llm" and not judge_target:
        raise ValueError("--lane llm needs --judge-target SPEC (e.g. llamacpp:smollm2)")
    if not judge_target or lane not in ("llm", "cascade"):
        judge = make_judge(lane, None, head)
        return judge, judge_rows(judge, pairs)
    target = make_judge_target(judge_target)

    async def run() -> tuple[Judge, list[Verdict]]:
        async with target:
            judge = make_judge(lane, target, head)
            return judge, await judge.judge_batch(pairs)
    return asyncio.run(run())


def _file_tag(path: Path) -> str:
    """A label or training file as receipts name it: file name and the start of its sha256."""
    return f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


@judge_app.command("file", hidden=True)
def judge_file(source: Annotated[Path, typer.Argument(help="JSONL rows {id, prompt, response, ...}.")],
               out: Annotated[Path, typer.Option("--out", help="Output JSONL.")],
               lane: LaneOption = DEFAULT_JUDGE, judge_target: JudgeTargetOption = None,
               head: HeadOption = None) -> None:
    """Judge every row; write {id, verdict, score, lane, depth} plus the input's other fields."""
    try:
        rows = read_rows(source)
        judge, verdicts = _verdicts(rows, lane, judge_target, head)
    except (InputFileError, ValueError, RefcalError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    lines = []
    for row, verdict in zip(rows, verdicts, strict=True):
        fields = {"id": row.id, "verdict": verdict.label, "score": verdict.score, "lane": verdict.lane,
                  "depth": verdict.depth}
        lines.append(json.dumps({**(row.model_extra or {}), **fields}, ensure_ascii=False))
    write_atomic(out, "\n".join(lines) + "\n")
    console.print(f"judged {len(rows)} rows with {judge.name} {judge.version} → {out}", highlight=False, markup=False)


StoreOption = Annotated[Path, typer.Option("--store", envvar="REFCAL_STORE",
                                           help="Run database (reviewed labels; the measured agreement is kept "
                                                "there).")]
DEFAULT_STORE = Path(".refcal") / "refcal.db"
ReviewedOption = Annotated[bool, typer.Option("--reviewed", help="Use the labels people gave on the review page "
                                                                 "(stored in --store; contested ones left out).")]
RunOption = Annotated[list[str] | None, typer.Option("--run", help="With --reviewed: only these runs (repeat).")]


def _reviewed(store: Path, runs: list[str] | None) -> tuple[list[ResponseRow], str]:
    """Reviewed labels as rows, and how receipts name them (store, runs, label count, digest)."""
    from refcal.metrics.agreement import reviewed_rows
    from refcal.run.session import find_run

    with Store(store) as database:
        run_ids = [find_run(database, run).run_id for run in runs] if runs else None
        labels = database.labels(run_ids)
        attempts = {(label.run_id, label.variant_id): database.attempt(label.run_id, label.variant_id)
                    for label in labels}
    rows, contested = reviewed_rows(labels, attempts)
    if not rows:
        raise ValueError(f"no reviewed labels in {store}" + (f" for runs {', '.join(runs)}" if runs else "")
                         + (f" ({contested} contested)" if contested else "") + ": review first (refcal review)")
    if contested:
        console.print(f"{contested} contested attempts (reviewers disagree) left out", highlight=False)
    digest = hashlib.sha256("\n".join(f"{row.id}={row.label}" for row in rows).encode()).hexdigest()[:16]
    return rows, f"reviewed labels in {store.name} ({len(rows)} attempts) sha256:{digest}"


@judge_app.command("eval")
def judge_eval(labels: Annotated[Path | None, typer.Option("--labels", help="JSONL rows with a human `label`.")]
               = None,
               reviewed: ReviewedOption = False, run: RunOption = None,
               lane: LaneOption = DEFAULT_JUDGE, judge_target: JudgeTargetOption = None, head: HeadOption = None,
               by: Annotated[list[str] | None, typer.Option("--by", help="Break down by this column.")] = None,
               store: StoreOption = DEFAULT_STORE) -> None:
    """Agreement of a lane with human labels (refusal = full + partial refusal)."""
    try:
        if (labels is None) == (not reviewed):
            raise ValueError("give one of --labels FILE and --reviewed")
        rows, source = _reviewed(store, run) if reviewed else (read_rows(labels, require_label=True), "")
        judge, verdicts = _verdicts(rows, lane, judge_target, head)
    except (InputFileError, ValueError, RefcalError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    pairs = [(row.label, verdict.label) for row, verdict in zip(rows, verdicts, strict=True)]
    assert all(human is not None for human, _ in pairs)
    overall = agreement(pairs)  # type: ignore[arg-type]
    with Store(store) as database:
        database.record_agreement(MeasuredAgreement(
            judge=judge.name, version=judge.version, labels=_file_tag(labels) if labels else source,
            rows=overall.rows, accuracy=overall.accuracy, f1=overall.f1, kappa=overall.kappa,
            errors=side_errors([human for human, _ in pairs], [judged for _, judged in pairs])))
    console.print(f"{judge.name} {judge.version} on {labels or source} ({overall.rows} rows)", highlight=False,
                  markup=False)
    _print_scores({"overall": overall})
    _print_confusion(overall)
    for column in by or []:
        keys = [str((row.model_extra or {}).get(column, getattr(row, column, None))) for row in rows]
        console.print(f"by {column}:", highlight=False, markup=False)
        _print_scores(agreement_by(keys, pairs))  # type: ignore[arg-type]


@judge_app.command("train")
def judge_train(out: Annotated[Path, typer.Option("--out", help="Head file to write (.npz).")],
                labels: Annotated[list[Path] | None, typer.Option("--labels", help="JSONL rows with a human `label` "
                                                                                  "(repeat for several files).")]
                = None,
                reviewed: ReviewedOption = False, run: RunOption = None, store: StoreOption = DEFAULT_STORE,
                recipe: Annotated[str, typer.Option(help="What the head embeds: opening-masked (the response's "
                                                         "opening, words shared with the prompt masked) or "
                                                         "opening.")]
                = "opening-masked") -> None:
    """Fit a head on your own labelled responses (embedding of each response's opening)."""
    from refcal.judges.head import fit_head  # numpy and torch only when a head is trained

    try:
        if not labels and not reviewed:
            raise ValueError("give --labels FILE (repeatable) and/or --reviewed")
        rows = [row for path in labels or [] for row in read_rows(path, require_label=True)]
        sources = [_file_tag(path) for path in labels or []]
        if reviewed:
            reviewed_rows, source = _reviewed(store, run)
            rows += reviewed_rows
            sources.append(source)
        model = fit_head([(row.prompt, row.response) for row in rows], [row.label for row in rows if row.label],
                         "; ".join(sources), recipe=recipe)
    except (InputFileError, RefcalError, ValueError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    model.save(out)
    console.print(f"trained {model.version} on {len(rows)} rows → {out}", highlight=False, markup=False)


def _print_scores(groups: dict[str, Agreement]) -> None:
    table = Table("group", "rows", "acc", "prec", "recall", "F1", "3-class", "κ", "undet.",
                  caption="refusal = full + partial; undetermined counts as disagreement")
    table.columns[0].overflow = "fold"
    for name, scores in groups.items():
        table.add_row(escape(name), str(scores.rows), *(f"{value:.3f}" for value in (
            scores.accuracy, scores.precision, scores.recall, scores.f1, scores.three_class, scores.kappa)),
            str(scores.undetermined))
    console.print(table)


def _print_confusion(scores: Agreement) -> None:
    columns = next(iter(scores.confusion.values())).keys()
    table = Table("human ↓ / judge →", *columns, title="confusion matrix")
    for human, row in scores.confusion.items():
        table.add_row(escape(human), *(str(row[column]) for column in columns))
    console.print(table)
