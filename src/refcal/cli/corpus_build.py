"""`refcal corpus build`: training rows from drill failures and recipes, checked against frozen benches.

    refcal corpus build --recipe failures --from RUN… [--teacher SPEC] --out corpus.jsonl
    refcal corpus build --recipe pairs --bench NAME --out pairs.jsonl
    refcal corpus build --recipe general --instructions FILE --base SPEC --out general.jsonl
    refcal corpus build --recipe tbr --bench NAME --base SPEC [--teacher SPEC] [--general FILE] --out tbr.jsonl

Rejected teacher outputs go to OUT.rejects.jsonl with the reason. The written corpus is checked against
every frozen bench (lexical layers); hits are printed, and training refuses the corpus until they are gone
(or `--allow-contamination` is given to training, which its receipt records).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from refcal.bench import load_bench
from refcal.cli.common import DEFAULT_STORE, LocksOption, StoreOption, console, fail
from refcal.cli.exit_codes import EXIT_INPUT
from refcal.errors import InputFileError, MissingExtraError, RefcalError, StoreError
from refcal.files import json_lines, write_atomic
from refcal.recal.builders import (
    RECIPES,
    Built,
    build_failures_async,
    build_general_async,
    build_pairs,
    build_tbr_async,
)
from refcal.records import Message
from refcal.targets.base import GenerationParams, Target

T = TypeVar("T")
TEACHER_TOKENS = 384


build_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `build` to the `refcal corpus` group."""
    parent.add_typer(build_app)


@build_app.command("build")
def corpus_build(
    recipe: Annotated[str, typer.Option(help=f"One of {', '.join(RECIPES)}.")],
    out: Annotated[Path, typer.Option(help="Corpus to write (JSONL, chat format with provenance).")],
    runs: Annotated[list[str] | None, typer.Option("--from", help="failures: run ids or output folders.")] = None,
    bench: Annotated[str | None, typer.Option(help="pairs, tbr: the bench whose items are used.")] = None,
    instructions: Annotated[Path | None, typer.Option(help="general: JSONL rows with `prompt` (or `instruction`).")]
    = None,
    general: Annotated[Path | None, typer.Option(help="tbr: general rows to mix in (a `general` corpus).")] = None,
    base: Annotated[str | None, typer.Option(help="general, tbr internal: the base model (target spec).")] = None,
    teacher: Annotated[str | None, typer.Option(help="failures, tbr external: the teacher (target spec).")] = None,
    ratio: Annotated[int, typer.Option(min=0, help="tbr: general rows per safety row.")] = 9,
    gamma: Annotated[float, typer.Option(min=0.0, max=1.0, help="tbr: share of general rows reflected.")] = 0.0,
    store: StoreOption = DEFAULT_STORE,
    locks: LocksOption = Path("frozen"),
) -> None:
    """Build a training corpus from drill failures or a recipe; rejects are logged beside it."""
    if recipe not in RECIPES:
        raise fail(f"--recipe must be one of {', '.join(RECIPES)}, got '{recipe}'", EXIT_INPUT)
    try:
        built = asyncio.run(_build_async(recipe, runs, bench, instructions, general, base, teacher, ratio, gamma,
                                         store))
    except (RefcalError, ValueError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    write_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in built.rows))
    rejects = out.with_name(out.name + ".rejects.jsonl")
    write_atomic(rejects, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in built.rejected))
    console.print(f"{recipe}: {len(built.rows)} rows → {out}; {len(built.rejected)} rejected → {rejects}",
                  highlight=False, markup=False)
    _check(out, locks, recipe)


def _check(out: Path, locks: Path, recipe: str) -> None:
    """The lexical contamination layers on what was written (training runs the full check again)."""
    if recipe == "pairs" or not out.stat().st_size:
        return  # pair rows hold prompts of a bench, not chat rows; training checks them itself
    from refcal.corpus import ContaminationOptions, check_corpus

    try:
        report = check_corpus([out], locks=locks, options=ContaminationOptions(semantic="off"))
    except (InputFileError, MissingExtraError) as error:
        console.print(f"contamination not checked: {error}", highlight=False, markup=False)
        return
    hits = len(report.hits)
    console.print(f"contamination (exact, near, template) against {len(report.benches)} frozen benches: {hits} hits"
                  + (" — training will refuse this corpus (refcal corpus check shows them)" if hits else ""),
                  highlight=False)


async def _build_async(recipe: str, runs: Sequence[str] | None, bench: str | None, instructions: Path | None,
                       general: Path | None, base: str | None, teacher: str | None, ratio: int, gamma: float,
                       store: Path) -> Built:
    from refcal.judges import make_judge

    if recipe == "pairs":
        return build_pairs(load_bench(_need(bench, "--bench")))
    judge = make_judge("cascade")
    async with contextlib.AsyncExitStack() as stack:
        writer = await _start(stack, teacher) if teacher else None
        model = await _start(stack, base) if base else None
        if recipe == "failures":
            return await _failures_async(_need(runs, "--from"), judge, writer, teacher, store)
        if recipe == "general":
            prompts = [_instruction(row, instructions, number)
                       for number, row in json_lines(_need(instructions, "--instructions"))]
            return await build_general_async(prompts, _need(model, "--base"), base or "", judge, str(instructions))
        items = load_bench(_need(bench, "--bench")).items
        rows = [row for _, row in json_lines(general)] if general else []
        speaker = writer or _need(model, "--base (internal reflection) or --teacher (external)")
        return await build_tbr_async(items, rows, judge, speaker, (teacher or base) or "",
                                     "external" if writer else "internal", ratio, gamma)


async def _failures_async(runs: Sequence[str], judge, writer, teacher: str | None, store_path: Path) -> Built:
    from refcal.run.session import find_run
    from refcal.store.runs import Store

    built = Built()
    with Store(store_path) as store:
        for reference in runs:
            run = find_run(store, reference)
            part = await build_failures_async(list(store.attempts(run.run_id)), judge, writer, teacher, run.run_id)
            built.rows += part.rows
            built.rejected += part.rejected
    if not built.rows and not built.rejected:
        raise StoreError("no failures in those runs: nothing to learn from")
    return built


async def _start(stack: contextlib.AsyncExitStack, spec: str):
    """A started target, as a messages → text function."""
    from refcal.targets import make_target

    target: Target = make_target(spec, params=GenerationParams(max_tokens=TEACHER_TOKENS))
    await stack.enter_async_context(target)

    async def send(messages: Sequence[Message]) -> str:
        return (await target.complete_async(messages)).text
    return send


def _need(value, option: str):
    if value is None or value == []:
        raise ValueError(f"this recipe needs {option}")
    return value


def _instruction(row: object, path: Path | None, line: int) -> str:
    text = row.get("prompt") or row.get("instruction") if isinstance(row, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InputFileError("needs a non-empty `prompt` or `instruction`", path=str(path), line=line, field="prompt")
    return text
