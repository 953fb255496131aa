"""`refcal drill`: drill a target on both sides of refusal, in four steps: options → plan → run → report.

Exit codes (refcal.cli.exit_codes): 0 done; 2 bad input; 3 target unavailable at start; 4 drill finished but
some attempts are errors; 130 interrupted (finish with `refcal drill --resume RUN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from refcal.bench import load_bench
from refcal.bench.freeze import DEFAULT_LOCKS, check_frozen
from refcal.cli.common import DEFAULT_STORE, LocksOption, StoreOption, console, damaged_store, fail, parse_mapping
from refcal.cli.exit_codes import EXIT_ERRORS, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE
from refcal.cli.progress import DrillProgress
from refcal.drills.attacker import Attacker, make_attacker, new_attacker
from refcal.drills.mutators import select
from refcal.drills.plan import HINT_MODES, check_plan, planned_count, replay_variant
from refcal.drills.scripts import MAX_TURNS, MIN_TURNS, load_scripts, shipped_scripts
from refcal.errors import FatalTargetError, InputFileError, MissingExtraError, MutatorError, StoreError, TargetSpecError
from refcal.judges import DEFAULT_JUDGE, JUDGES, Judge, make_judge
from refcal.judges.llm import make_judge_target
from refcal.receipts import Receipt
from refcal.records import MAX_DEPTH, MAX_PER_ITEM, PRESSURE_KINDS, MutationPlan, RunRecord, Script
from refcal.report.terminal import print_summary
from refcal.run.session import check_resumable, drill_async, find_run, new_run
from refcal.store.runs import Store
from refcal.targets import DEFAULT_API_KEY_ENV, DEFAULT_TARGET, GenerationParams, Target, make_target

drill_app = typer.Typer()
_Built = TypeVar("_Built")


def register(parent: typer.Typer) -> None:
    """Add `drill` to the `refcal` app."""
    parent.add_typer(drill_app)


@dataclass(frozen=True)
class _Prepared:
    """What a drill needs once its options are checked: the targets and judge (not started yet) and the plan,
    which records the run in the store once the targets have started."""

    target: Target
    judge: Judge
    plan: Callable[[Store], RunRecord]
    judge_target: Target | None = None
    attacker: Attacker | None = None


@drill_app.command()
def drill(
    bench: Annotated[str, typer.Option(help="Built-in or public bench name, or a .jsonl/.csv path.")] = "starter",
    target: Annotated[str, typer.Option(help="llamacpp:smollm2 | llamacpp:PATH.gguf | openai:MODEL@URL | "
                                              "hf:PATH")] = DEFAULT_TARGET,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight (slots for llamacpp, batch "
                                                          "size for hf).")] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/RUN_ID).")] = None,
    resume: Annotated[str | None, typer.Option(help="Finish an interrupted run (id or output dir).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Send every request, even if cached.")] = False,
    api_key_env: Annotated[str, typer.Option(help="Name of the env variable holding the API key.")] =
        DEFAULT_API_KEY_ENV,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    columns: Annotated[str | None, typer.Option(help="CSV: field=column,... e.g. klass=type")] = None,
    expect_map: Annotated[str | None, typer.Option(help="CSV: value=refuse|comply,... e.g. "
                                                        "unsafe=refuse,safe=comply")] = None,
    judge: Annotated[str, typer.Option(help=f"Judge: {', '.join(JUDGES)}.")] = DEFAULT_JUDGE,
    judge_target: Annotated[str | None, typer.Option(help="Target spec that plays the llm lane (for --judge llm, "
                                                          "or the cascade's last lane).")] = None,
    head: Annotated[Path | None, typer.Option(help="Head file (.npz) from `refcal judge train`, for the head "
                                                   "and cascade (default: the shipped head).")] = None,
    mutators: Annotated[str | None, typer.Option(help="Fast drill: mutator names or families, comma-separated "
                                                      "(surface, encoding, framing, language, injection, all).")]
        = None,
    per_item: Annotated[int, typer.Option(help="Mutated variants per item (with --mutators).")] = 10,
    depth: Annotated[int, typer.Option(help=f"Longest mutator chain (1–{MAX_DEPTH}).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the mutation plan.")] = 0,
    replay: Annotated[str | None, typer.Option(help="Re-send exactly one variant, by its id.")] = None,
    scripts: Annotated[str | None, typer.Option(help="Slow drill: 'all', shipped script names (comma-separated), "
                                                     "or a .yaml/.json script file.")] = None,
    to_end: Annotated[bool, typer.Option("--to-end", help="Slow drill: keep pressing after a break.")] = False,
    attacker: Annotated[str | None, typer.Option(help="Slow drill in attacker mode: the target spec that writes the "
                                                      "user's turns (may be the drilled model itself).")] = None,
    attacker_turns: Annotated[int, typer.Option(help=f"Attacker mode: turns in all, the seed included "
                                                     f"({MIN_TURNS}–{MAX_TURNS}).")] = 5,
    attacker_kinds: Annotated[str | None, typer.Option(help="Attacker mode: pressure kinds it may apply, in "
                                                            f"escalation order (default all: "
                                                            f"{','.join(PRESSURE_KINDS)}).")] = None,
    hints: Annotated[str, typer.Option(help="Grounded items (with a packet): send them hint-free and hinted "
                                            "(both), hint-free only (off), or hinted only (only).")] = "both",
    store: StoreOption = DEFAULT_STORE,
    locks: LocksOption = DEFAULT_LOCKS,
) -> None:
    """Drill a target on both sides of refusal; write OUT/receipt.json and OUT/report.html."""
    options = dict(bench=bench, target=target, concurrency=concurrency, limit=limit, out=out, no_cache=no_cache,
                   api_key_env=api_key_env, max_tokens=max_tokens, temperature=temperature, columns=columns,
                   expect_map=expect_map, judge=judge, judge_target=judge_target, head=head, mutators=mutators,
                   per_item=per_item, depth=depth, seed=seed, replay=replay, scripts=scripts, to_end=to_end,
                   attacker=attacker, attacker_turns=attacker_turns, attacker_kinds=attacker_kinds, hints=hints,
                   locks=locks)
    try:
        if resume:
            with Store(store) as database:
                code = asyncio.run(_drill_async(database, _resumed(database, resume)))
        else:
            prepared = _planned(**options)  # every option checked before the store is opened: bad input writes nothing
            with Store(store) as database:
                code = asyncio.run(_drill_async(database, prepared))
    except sqlite3.OperationalError as error:
        if "full" not in str(error):
            raise damaged_store(store, error) from None
        raise fail(f"{store}: the disk is full ({error}); the run is marked interrupted where the store could still "
                   "be written: free space, then `refcal drill --resume RUN` (see `refcal runs`)", EXIT_INPUT) from None
    except sqlite3.DatabaseError as error:
        raise damaged_store(store, error) from None
    except OSError as error:
        raise fail(f"cannot write {error.filename or 'output'}: {error.strerror or error}; free space, then "
                   "`refcal drill --resume RUN` (see `refcal runs`)", EXIT_INPUT) from None
    except KeyboardInterrupt:
        raise fail("interrupted; finish with: refcal drill --resume RUN (see `refcal runs`)",
                    EXIT_INTERRUPTED) from None
    except (InputFileError, TargetSpecError, StoreError, MissingExtraError, MutatorError, ValueError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    except FatalTargetError as error:
        raise fail(f"target unavailable: {error}", EXIT_UNAVAILABLE) from None
    raise typer.Exit(code)


def _resumed(database: Store, resume: str) -> _Prepared:
    """The plan of an interrupted run: its target, judge and attacker as recorded, checked against the run."""
    run = find_run(database, resume)
    the_target = make_target(run.target_spec, params=GenerationParams(**run.fingerprint["params"]),
                             concurrency=run.concurrency, api_key_env=run.api_key_env or DEFAULT_API_KEY_ENV)
    the_judge_target = _judge_target(run.judge_target)
    the_judge = make_judge(run.judge_name, the_judge_target, Path(run.judge_head) if run.judge_head else None)
    check_resumable(run, the_target, the_judge)
    the_attacker = make_attacker(run.attacker) if run.attacker else None
    return _Prepared(the_target, the_judge, lambda database: run, the_judge_target, the_attacker)


def _named(option: str, build: Callable[[], _Built]) -> _Built:
    """`build()`, with a bad target spec named by the option that gave it (`--target: bad target spec …`)."""
    try:
        return build()
    except TargetSpecError as error:
        raise TargetSpecError(f"{option}: {error}") from None


def _planned(*, bench: str, target: str, concurrency: int, limit: int | None, out: Path | None,
             no_cache: bool, api_key_env: str, max_tokens: int, temperature: float, columns: str | None,
             expect_map: str | None, judge: str, judge_target: str | None, head: Path | None,
             mutators: str | None, per_item: int, depth: int, seed: int, replay: str | None, scripts: str | None,
             to_end: bool, attacker: str | None, attacker_turns: int, attacker_kinds: str | None, hints: str,
             locks: Path) -> _Prepared:
    """A new run's plan: every option checked against the bench before any target starts."""
    the_bench = load_bench(bench, parse_mapping(columns, "--columns"), parse_mapping(expect_map, "--expect-map"))
    check_frozen(the_bench, locks)  # a frozen bench that changed stops here, before the target starts
    mutation = _mutation_plan(mutators, per_item, depth, seed)
    the_scripts = _scripts(scripts)
    if sum(bool(mode) for mode in (the_scripts, attacker, mutation or replay)) > 1:
        raise ValueError("choose one of --scripts, --attacker (slow drills) and --mutators/--replay")
    the_attacker = _named("--attacker", lambda: _attacker(attacker, attacker_turns, attacker_kinds)) \
        if attacker else None
    if hints not in HINT_MODES:
        raise ValueError(f"--hints must be one of {', '.join(HINT_MODES)}, got '{hints}'")
    if (the_scripts or the_attacker) and any(item.grounded for item in the_bench.items):
        raise ValueError("slow drills (--scripts, --attacker) do not take grounded items (items with a "
                         "packet): drill them without --scripts/--attacker")
    if mutation is not None:
        check_plan(the_bench, mutation)  # before the target starts
    if replay is not None:
        replay_variant(the_bench, replay)  # a bad id fails here, before the target starts
    the_target = _named("--target", lambda: make_target(
        target, params=GenerationParams(max_tokens=max_tokens, temperature=temperature), concurrency=concurrency,
        api_key_env=api_key_env))
    the_judge_target = _named("--judge-target",
                              lambda: _judge_target(judge_target if judge in ("llm", "cascade") else None))
    the_judge = make_judge(judge, the_judge_target, head)
    run_options: dict[str, Any] = dict(
        target_spec=the_target.description, out_root=Path("runs"), out_dir=out, limit=limit,
        concurrency=concurrency, use_cache=not no_cache, api_key_env=api_key_env,
        judge_target=the_judge_target.description if the_judge_target else None,
        judge_head=str(head.resolve()) if head else None, mutation=None if replay else mutation, replay=replay,
        scripts=the_scripts, attacker=the_attacker.plan if the_attacker else None, to_end=to_end, locks=locks,
        hints=hints)

    def plan(database: Store) -> RunRecord:
        return new_run(database, the_bench, the_target, the_judge, **run_options)
    return _Prepared(the_target, the_judge, plan, the_judge_target, the_attacker)


def _mutation_plan(spec: str | None, per_item: int, depth: int, seed: int) -> MutationPlan | None:
    """The fast-drill plan of the options, with the ranges checked before anything starts."""
    if spec is None:
        return None
    if not 1 <= depth <= MAX_DEPTH:
        raise MutatorError(f"--depth must be 1 to {MAX_DEPTH}, got {depth}")
    if not 1 <= per_item <= MAX_PER_ITEM:
        raise MutatorError(f"--per-item must be 1 to {MAX_PER_ITEM:,}, got {per_item}")
    return MutationPlan(mutators=select(spec), per_item=per_item, depth=depth, seed=seed)


def _scripts(spec: str | None) -> tuple[Script, ...] | None:
    """Scripts from --scripts: a file, 'all', or shipped names."""
    if spec is None:
        return None
    if spec.endswith((".yaml", ".yml", ".json")):
        return load_scripts(spec)
    shipped = {script.name: script for script in shipped_scripts()}
    if spec == "all":
        return tuple(shipped.values())
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in shipped]
    if unknown or not names:
        raise ValueError(f"unknown scripts {unknown} (shipped: {', '.join(shipped)}; or give a .yaml/.json file)")
    return tuple(shipped[name] for name in names)


def _attacker(spec: str, turns: int, kinds: str | None) -> Attacker:
    if not MIN_TURNS <= turns <= MAX_TURNS:
        raise ValueError(f"--attacker-turns must be {MIN_TURNS} to {MAX_TURNS}, got {turns}")
    chosen = tuple(kind.strip() for kind in kinds.split(",") if kind.strip()) if kinds else PRESSURE_KINDS
    unknown = [kind for kind in chosen if kind not in PRESSURE_KINDS]
    if unknown or not chosen:
        raise ValueError(f"unknown pressure kinds {unknown} (known: {', '.join(PRESSURE_KINDS)})")
    return new_attacker(spec, turns, chosen)


def _judge_target(spec: str | None) -> Target | None:
    return make_judge_target(spec) if spec else None


async def _drill_async(store: Store, prepared: _Prepared) -> int:
    """Start the targets first (fail fast), only then record the run, drill, and summarise."""
    attacker = prepared.attacker
    async with contextlib.AsyncExitStack() as stack:
        for started in (prepared.target, prepared.judge_target, attacker.target if attacker else None):
            if started is not None:
                await stack.enter_async_context(started)
        run = prepared.plan(store)
        console.print(f"run [b]{escape(run.run_id)}[/b]: {escape(run.bench_name)} ({run.bench_digest[:19]}…) on "
                      f"{escape(run.target_spec)}, judge {escape(run.judge_name)} {escape(run.judge_version)}",
                      highlight=False)
        with DrillProgress(planned_count(run), store.count_attempts(run.run_id)) as advance:
            receipt = await drill_async(run, prepared.target, prepared.judge, store, advance, attacker)
    return _report(receipt, run)


def _report(receipt: Receipt, run: RunRecord) -> int:
    """The summary on the terminal, where receipt and report are, and the exit code."""
    print_summary(receipt, console)
    out_dir = Path(run.out_dir)
    console.print(f"receipt: {out_dir / 'receipt.json'}   report: {out_dir / 'report.html'}", highlight=False,
                  markup=False)
    return EXIT_ERRORS if receipt.counts.errors else EXIT_OK
