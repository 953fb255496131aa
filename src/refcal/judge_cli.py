"""`refcal judge`: judge a response file, or measure a judge against human labels.

    refcal judge IN.jsonl --out OUT.jsonl [--lane L]
    refcal judge eval --labels FILE [--lane L] [--by model --by type]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from typer.core import TyperGroup

from refcal.console import console, fail
from refcal.errors import InputFileError, RefcalError
from refcal.judges import Judge, Verdict, make_judge
from refcal.judges.agreement import Agreement, agreement, agreement_by
from refcal.judges.labels import ResponseRow, read_rows
from refcal.judges.llm import make_judge_target
from refcal.receipts import write_atomic
from refcal.store import MeasuredAgreement, Store

EXIT_INPUT = 2


class _DefaultToFile(TyperGroup):
    """`refcal judge IN.jsonl ...` runs the `file` command; `eval` stays a subcommand."""

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["file", *args]
        return super().resolve_command(ctx, args)


judge_app = typer.Typer(cls=_DefaultToFile, no_args_is_help=True,
                        help="Judge a response file (refcal judge IN.jsonl --out OUT.jsonl), or `eval` a lane.")

LaneOption = Annotated[str, typer.Option("--lane", help="Judge lane: markers, or llm (needs --judge-target).")]
JudgeTargetOption = Annotated[str | None, typer.Option("--judge-target", help="Target spec that plays the llm "
                                                                            "lane's judge.")]


HeadOption = Annotated[Path | None, typer.Option("--head", help="Head file (.npz) for --lane head.")]


def _verdicts(rows: list[ResponseRow], lane: str, judge_target: str | None,
              head: Path | None = None) -> tuple[Judge, list[Verdict]]:
    """Judge every row; the head embeds all rows in one batched pass; an llm lane gets its target started
    and its calls run concurrently."""
    if lane == "head":
        from refcal.judges.head import HeadJudge, HeadModel  # numpy and torch only when a head is used

        if head is None:
            raise ValueError("--lane head needs --head FILE.npz (refcal judge train writes one)")
        head_judge = HeadJudge(HeadModel.load(head))
        return head_judge, head_judge.judge_many([(row.prompt, row.response) for row in rows])
    if lane != "llm":
        judge = make_judge(lane)
        return judge, [judge.judge(row.prompt, row.response) for row in rows]
    if not judge_target:
        raise ValueError("--lane llm needs --judge-target SPEC (e.g. llamacpp:smollm2)")
    target = make_judge_target(judge_target)

    async def run() -> tuple[Judge, list[Verdict]]:
        async with target:
            judge = make_judge(lane, target)
            return judge, list(await asyncio.gather(*(judge.judge_async(row.prompt, row.response) for row in rows)))
    return asyncio.run(run())


def _file_tag(path: Path) -> str:
    """A label or training file as receipts name it: file name and the start of its sha256."""
    return f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"


@judge_app.command("file", hidden=True)
def judge_file(source: Annotated[Path, typer.Argument(help="JSONL rows {id, prompt, response, ...}.")],
               out: Annotated[Path, typer.Option("--out", help="Output JSONL.")],
               lane: LaneOption = "markers", judge_target: JudgeTargetOption = None,
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
    console.print(f"judged {len(rows)} rows with {judge.name} {judge.version} → {out}", highlight=False)


@judge_app.command("eval")
def judge_eval(labels: Annotated[Path, typer.Option("--labels", help="JSONL rows with a human `label`.")],
               lane: LaneOption = "markers", judge_target: JudgeTargetOption = None, head: HeadOption = None,
               by: Annotated[list[str] | None, typer.Option("--by", help="Break down by this column.")] = None,
               store: Annotated[Path, typer.Option("--store", envvar="REFCAL_STORE",
                                                   help="Run database that keeps the measured agreement.")]
               = Path(".refcal") / "refcal.db",
               ) -> None:
    """Agreement of a lane with human labels (refusal = full + partial refusal)."""
    try:
        rows = read_rows(labels, require_label=True)
        judge, verdicts = _verdicts(rows, lane, judge_target, head)
    except (InputFileError, ValueError, RefcalError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    pairs = [(row.label, verdict.label) for row, verdict in zip(rows, verdicts, strict=True)]
    assert all(human is not None for human, _ in pairs)
    overall = agreement(pairs)  # type: ignore[arg-type]
    with Store(store) as database:
        database.record_agreement(MeasuredAgreement(
            judge=judge.name, version=judge.version, labels=_file_tag(labels),
            rows=overall.rows, accuracy=overall.accuracy, f1=overall.f1, kappa=overall.kappa))
    console.print(f"{judge.name} {judge.version} on {labels} ({overall.rows} rows)", highlight=False)
    _print_scores({"overall": overall})
    _print_confusion(overall)
    for column in by or []:
        keys = [str((row.model_extra or {}).get(column, getattr(row, column, None))) for row in rows]
        console.print(f"by {column}:", highlight=False)
        _print_scores(agreement_by(keys, pairs))  # type: ignore[arg-type]


@judge_app.command("train")
def judge_train(labels: Annotated[Path, typer.Option("--labels", help="JSONL rows with a human `label`.")],
                out: Annotated[Path, typer.Option("--out", help="Head file to write (.npz).")]) -> None:
    """Fit a head on your own labelled responses (embedding of each response's opening)."""
    from refcal.judges.embedding import SentenceEmbedder  # numpy and torch only when a head is trained
    from refcal.judges.head import opening, train_head

    try:
        rows = read_rows(labels, require_label=True)
        features = SentenceEmbedder().embed([opening(row.response) for row in rows])
    except (InputFileError, RefcalError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    model = train_head(features, [row.label for row in rows if row.label], _file_tag(labels))
    model.save(out)
    console.print(f"trained {model.version} on {len(rows)} rows → {out}", highlight=False)


def _print_scores(groups: dict[str, Agreement]) -> None:
    table = Table("group", "rows", "acc", "prec", "recall", "F1", "3-class", "κ", "undet.",
                  caption="refusal = full + partial; undetermined counts as disagreement")
    table.columns[0].overflow = "fold"
    for name, scores in groups.items():
        table.add_row(name, str(scores.rows), *(f"{value:.3f}" for value in (
            scores.accuracy, scores.precision, scores.recall, scores.f1, scores.three_class, scores.kappa)),
            str(scores.undetermined))
    console.print(table)


def _print_confusion(scores: Agreement) -> None:
    columns = next(iter(scores.confusion.values())).keys()
    table = Table("human ↓ / judge →", *columns, title="confusion matrix")
    for human, row in scores.confusion.items():
        table.add_row(human, *(str(row[column]) for column in columns))
    console.print(table)
