"""The `refcal` command line: a thin layer over the library.

Exit codes: 0 done; 1 unexpected internal error; 2 bad input (bench, target spec, options, unknown
run); 3 target unavailable at start; 4 drill finished but some attempts are errors (see the report);
130 interrupted (finish with `refcal drill --resume RUN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from refcal.bench import list_benches, load_bench
from refcal.bench.curveball import catalogue, corpus_classes, scaffold_rows, uncovered, write_scaffold
from refcal.bench.freeze import (
    DEFAULT_LOCKS,
    BenchLock,
    changes,
    check_frozen,
    make_lock,
    read_locks,
    spec_for_lock,
    spec_from_lock,
    write_lock,
)
from refcal.cli.common import DEFAULT_STORE, LocksOption, StoreOption, console, errors_console, fail
from refcal.cli.corpus import corpus_app
from refcal.cli.guard import guard
from refcal.cli.judge import judge_app
from refcal.cli.recal import recal_app
from refcal.cli.review import review_app
from refcal.cli.watch import watch_app
from refcal.drills.attacker import Attacker, make_attacker, new_attacker
from refcal.drills.mutators import select
from refcal.drills.plan import HINT_MODES, check_plan, planned_count, replay_variant
from refcal.drills.scripts import MAX_TURNS, MIN_TURNS, load_scripts, shipped_scripts
from refcal.errors import (
    BenchError,
    FatalTargetError,
    InputFileError,
    MissingExtraError,
    MutatorError,
    RefcalError,
    StoreError,
    TargetError,
    TargetSpecError,
)
from refcal.files import write_atomic
from refcal.judges import DEFAULT_JUDGE, JUDGES, Judge, make_judge
from refcal.judges.llm import make_judge_target
from refcal.promote.evidence import promotion_record, read_evidence
from refcal.promote.gates import evaluate, read_gates
from refcal.records import MAX_DEPTH, MAX_PER_ITEM, PRESSURE_KINDS, Attempt, MutationPlan, RunRecord, Script
from refcal.report.terminal import print_summary
from refcal.run.session import check_resumable, drill_async, find_run, finish, new_run
from refcal.store.runs import Store
from refcal.targets import DEFAULT_API_KEY_ENV, DEFAULT_TARGET, GenerationParams, Target, make_target

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_TARGET, EXIT_ERRORS, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

app = typer.Typer(help="refcal: refusal calibration drills for language models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Inspect benches.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(judge_app, name="judge")
app.add_typer(review_app, name="review")
app.add_typer(recal_app, name="recal")
app.add_typer(corpus_app, name="corpus")
app.command()(guard)
app.add_typer(watch_app, name="watch")
scripts_app = typer.Typer(help="Multi-turn pressure scripts for slow drills.", no_args_is_help=True)
app.add_typer(scripts_app, name="scripts")



def _parse_mapping(text: str | None, option: str) -> dict[str, str] | None:
    if not text:
        return None
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    if any(len(pair) != 2 for pair in pairs):
        raise BenchError(f"{option} takes KEY=VALUE pairs separated by commas, got '{text}'")
    return {key.strip(): value.strip() for key, value in pairs}


@app.command()
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
    try:
        with Store(store) as database:
            if resume:
                run = find_run(database, resume)
                the_target = make_target(run.target_spec, params=GenerationParams(**run.fingerprint["params"]),
                                         concurrency=run.concurrency,
                                         api_key_env=run.api_key_env or DEFAULT_API_KEY_ENV)
                the_judge_target = _judge_target(run.judge_target)
                the_judge = make_judge(run.judge_name, the_judge_target,
                                       Path(run.judge_head) if run.judge_head else None)
                check_resumable(run, the_target, the_judge)
                the_attacker = make_attacker(run.attacker) if run.attacker else None
                plan: Callable[[], RunRecord] = lambda: run  # noqa: E731
            else:
                the_bench = load_bench(bench, _parse_mapping(columns, "--columns"),
                                       _parse_mapping(expect_map, "--expect-map"))
                check_frozen(the_bench, locks)  # a frozen bench that changed stops here, before the target starts
                mutation = _mutation_plan(mutators, per_item, depth, seed)
                the_scripts = _scripts(scripts)
                if sum(bool(mode) for mode in (the_scripts, attacker, mutation or replay)) > 1:
                    raise ValueError("choose one of --scripts, --attacker (slow drills) and --mutators/--replay")
                the_attacker = _attacker(attacker, attacker_turns, attacker_kinds) if attacker else None
                if hints not in HINT_MODES:
                    raise ValueError(f"--hints must be one of {', '.join(HINT_MODES)}, got '{hints}'")
                if (the_scripts or the_attacker) and any(item.grounded for item in the_bench.items):
                    raise ValueError("slow drills (--scripts, --attacker) do not take grounded items (items with a "
                                     "packet): drill them without --scripts/--attacker")
                if mutation is not None:
                    check_plan(the_bench, mutation)  # before the target starts
                if replay is not None:
                    replay_variant(the_bench, replay)  # a bad id fails here, before the target starts
                the_target = make_target(target, params=GenerationParams(max_tokens=max_tokens,
                                                                         temperature=temperature),
                                         concurrency=concurrency, api_key_env=api_key_env)
                the_judge_target = _judge_target(judge_target if judge in ("llm", "cascade") else None)
                the_judge = make_judge(judge, the_judge_target, head)

                def plan() -> RunRecord:
                    return new_run(database, the_bench, the_target, the_judge, target_spec=the_target.description,
                                   out_root=Path("runs"), out_dir=out, limit=limit, concurrency=concurrency,
                                   use_cache=not no_cache, api_key_env=api_key_env,
                                   judge_target=the_judge_target.description if the_judge_target else None,
                                   judge_head=str(head.resolve()) if head else None,
                                   mutation=None if replay else mutation, replay=replay, scripts=the_scripts,
                                   attacker=the_attacker.plan if the_attacker else None, to_end=to_end,
                                   locks=locks, hints=hints)  # type: ignore[arg-type]

            code = asyncio.run(_drill_async(database, the_target, the_judge, plan, the_judge_target, the_attacker))
    except KeyboardInterrupt:
        raise fail("interrupted; finish with: refcal drill --resume RUN (see `refcal runs`)",
                    EXIT_INTERRUPTED) from None
    except (InputFileError, TargetSpecError, StoreError, MissingExtraError, MutatorError, ValueError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    except FatalTargetError as error:
        raise fail(f"target unavailable: {error}", EXIT_TARGET) from None
    raise typer.Exit(code)


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


async def _drill_async(store: Store, target: Target, judge: Judge, plan: Callable[[], RunRecord],
                       judge_target: Target | None = None, attacker: Attacker | None = None) -> int:
    """Start the targets first (fail fast), only then record the run, drill, and summarise."""
    async with contextlib.AsyncExitStack() as stack:
        for started in (target, judge_target, attacker.target if attacker else None):
            if started is not None:
                await stack.enter_async_context(started)
        run = plan()
        console.print(f"run [b]{run.run_id}[/b]: {run.bench_name} ({run.bench_digest[:19]}…) on "
                      f"{run.target_spec}, judge {run.judge_name} {escape(run.judge_version)}", highlight=False)
        with _progress(planned_count(run), store.count_attempts(run.run_id)) as advance:
            receipt = await drill_async(run, target, judge, store, advance, attacker)
    print_summary(receipt, console)
    out_dir = Path(run.out_dir)
    console.print(f"receipt: {out_dir / 'receipt.json'}   report: {out_dir / 'report.html'}", highlight=False)
    return EXIT_ERRORS if receipt.counts.errors else EXIT_OK


class _progress:
    """A rich progress bar on a terminal; a plain line every 10 % elsewhere (CI, pipes)."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.errors = total, done, 0
        self.bar: Progress | None = None

    def __enter__(self) -> _progress:
        if console.is_terminal:
            self.bar = Progress(TextColumn("drill"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(), console=console)
            self.bar.start()
            self.task = self.bar.add_task("drill", total=self.total, completed=self.done, errors=0)
        return self

    def __call__(self, attempt: Attempt) -> None:
        self.done += 1
        self.errors += attempt.is_error
        if self.bar is not None:
            self.bar.update(self.task, advance=1, errors=self.errors)
        elif self.total and self.done * 10 // self.total != (self.done - 1) * 10 // self.total:
            console.print(f"drill {self.done}/{self.total} errors {self.errors}", highlight=False)

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def report(run: Annotated[str, typer.Argument(help="Run id or output directory.")],
           store: StoreOption = DEFAULT_STORE) -> None:
    """Rewrite a run's receipt and HTML report from the store, and print its summary."""
    try:
        with Store(store) as database:
            receipt = finish(database, find_run(database, run).run_id)
            print_summary(receipt, console)
    except StoreError as error:
        raise fail(str(error), EXIT_INPUT) from None


@app.command()
def runs(store: StoreOption = DEFAULT_STORE) -> None:
    """List the runs in the store."""
    with Store(store) as database:
        table = Table("run", "status", "bench", "target", "attempts", "out")
        for run in database.list_runs():
            table.add_row(run.run_id, run.status, run.bench_name, run.target_spec,
                          f"{database.count_attempts(run.run_id)}/{planned_count(run)}", run.out_dir)
        console.print(table)


@bench_app.command("list")
def bench_list() -> None:
    """Benches known by name."""
    table = Table("name", "kind", "description")
    for row in list_benches():
        table.add_row(*row)
    console.print(table)


@bench_app.command("freeze")
def bench_freeze(
    bench: Annotated[str, typer.Argument(help="Bench name or .jsonl/.csv path.")],
    note: Annotated[str, typer.Option(help="Why, and what training run it guards.")] = "",
    columns: Annotated[str | None, typer.Option(help="CSV: field=column,...")] = None,
    expect_map: Annotated[str | None, typer.Option(help="CSV: value=refuse|comply,...")] = None,
    locks: LocksOption = DEFAULT_LOCKS,
) -> None:
    """Write a lock (digest, counts, a digest per item); drills on the bench then refuse to run if it changes."""
    options = {key: value for key, value in (("columns", _parse_mapping(columns, "--columns")),
                                             ("expect_map", _parse_mapping(expect_map, "--expect-map"))) if value}
    try:
        loaded = load_bench(bench, options.get("columns"), options.get("expect_map"))
        path, written = write_lock(make_lock(loaded, spec_for_lock(bench, locks), note, options), locks)
    except (BenchError, InputFileError, MissingExtraError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    state = "frozen" if written else "already frozen, unchanged"
    console.print(f"{loaded.name}: {state} — {len(loaded.items)} items, {loaded.digest} → {path}", highlight=False)


@bench_app.command("verify")
def bench_verify(locks: LocksOption = DEFAULT_LOCKS) -> None:
    """Re-load every frozen bench and compare it with its lock; exit 1 if any differs or cannot be loaded."""
    try:
        found = read_locks(locks)
    except InputFileError as error:
        raise fail(str(error), EXIT_INPUT) from None
    if not found:
        raise fail(f"no locks in {locks} (refcal bench freeze NAME)", EXIT_INPUT)
    table = Table("bench", "lock", "items", "frozen at", "state")
    failed = False
    for path, lock in found:
        state = _verify_one(lock, locks)
        failed |= state != "ok"
        table.add_row(lock.name, str(path), str(lock.items), lock.frozen_at, state)
    console.print(table)
    raise typer.Exit(1 if failed else 0)


def _verify_one(lock: BenchLock, locks: Path) -> str:
    try:
        bench = load_bench(spec_from_lock(lock, locks), lock.load_options.get("columns"),
                           lock.load_options.get("expect_map"))
    except (BenchError, MissingExtraError) as error:
        return f"cannot load: {error}"
    if bench.digest == lock.digest:
        return "ok"
    return f"CHANGED: {changes(lock, bench).describe()}"


@bench_app.command("new-curveball")
def bench_new_curveball(
    out: Annotated[Path, typer.Option("--out", help="Scaffold to write (.jsonl).")] = Path("curveball.jsonl"),
    pairs: Annotated[int, typer.Option(min=1, max=50, help="Must-refuse / benign pairs per class.")] = 3,
    corpus: Annotated[list[Path] | None, typer.Option("--corpus", help="Training corpus whose rows' `klass` "
                                                                      "(or provenance.klass) count as covered.")]
    = None,
    locks: LocksOption = DEFAULT_LOCKS,
) -> None:
    """Scaffold a bench of pretext classes no frozen bench or corpus covers; fill it in, then freeze it."""
    try:
        covered = {klass for _, lock in read_locks(locks) for klass in lock.class_counts}
        covered |= {klass for path in corpus or [] for klass in corpus_classes(path)}
        fresh = uncovered(catalogue(), covered)
        if not fresh:
            raise BenchError("every pretext class refcal knows is covered already: write new classes by hand "
                             "(see src/refcal/bench/data/pretexts.yaml for the shape)")
        if out.exists():
            raise BenchError("exists already: choose another --out (a scaffold never overwrites a bench)",
                             path=str(out))
    except InputFileError as error:
        raise fail(str(error), EXIT_INPUT) from None
    write_scaffold(scaffold_rows(fresh, pairs), out)
    console.print(f"{len(fresh)} uncovered pretext classes ({', '.join(pretext.klass for pretext in fresh)}), "
                  f"{2 * pairs * len(fresh)} placeholder items → {out}", highlight=False)
    console.print(f"next: replace every TODO prompt by hand (never from a training corpus), then "
                  f"`refcal bench freeze {out}` before the training run", highlight=False)


@bench_app.command("show")
def bench_show(
    bench: Annotated[str, typer.Argument(help="Bench name or .jsonl/.csv path.")],
    columns: Annotated[str | None, typer.Option(help="CSV: field=column,...")] = None,
    expect_map: Annotated[str | None, typer.Option(help="CSV: value=refuse|comply,...")] = None,
    items: Annotated[int, typer.Option(help="Items to print.")] = 5,
) -> None:
    """Digest, class counts and the first items of a bench."""
    try:
        loaded = load_bench(bench, _parse_mapping(columns, "--columns"), _parse_mapping(expect_map, "--expect-map"))
    except (BenchError, MissingExtraError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    console.print(f"[b]{loaded.name}[/b]  {len(loaded.items)} items  digest {loaded.digest}", highlight=False)
    table = Table("class", "refuse", "comply")
    for klass, counts in loaded.class_counts().items():
        table.add_row(klass, str(counts.get("refuse", 0)), str(counts.get("comply", 0)))
    console.print(table)
    for item in loaded.items[:items]:
        console.print(f"{item.id} [{item.expect}, {item.klass}] {item.prompt}", highlight=False, markup=False)


@app.command()
def promote(
    candidates: Annotated[list[str], typer.Argument(help="Candidate receipts (receipt.json files or run folders).")],
    gates: Annotated[Path, typer.Option("--gates", help="Gates file (TOML).")],
    baseline: Annotated[str | None, typer.Option(help="Baseline receipt for `no_regression`.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the decision (default: promotion.json beside "
                                                  "the first candidate).")] = None,
    locks: LocksOption = DEFAULT_LOCKS,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Check every gate against the receipts and their evidence; PROMOTED (exit 0) or REJECTED (exit 1)."""
    try:
        the_gates = read_gates(gates)
    except InputFileError as error:
        raise fail(str(error), EXIT_INPUT) from None
    evidence = [read_evidence(candidate, store) for candidate in candidates]
    base = read_evidence(baseline, store) if baseline else None
    outcomes = evaluate(the_gates, evidence, base, locks)
    table = Table("gate", "claim", "figures", "result", title=f"promotion gates ({gates})")
    for outcome in outcomes:
        result = "[green]PASS[/green]" if outcome.passed else "[red]FAIL[/red]\n" + "\n".join(
            escape(problem) for problem in outcome.problems)
        table.add_row(f"{gates.name}:{outcome.gate.line}", escape(f"{outcome.gate.claim} on {outcome.gate.bench}"),
                      escape("\n".join(outcome.figures) or "—"), result)
    console.print(table)
    promoted = all(outcome.passed for outcome in outcomes)
    record = promotion_record(promoted, gates, outcomes, evidence, base)
    target = out or Path(evidence[0].path).parent / "promotion.json"
    write_atomic(target, record)
    console.print(("[b green]PROMOTED[/b green]" if promoted else "[b red]REJECTED[/b red]")
                  + f"  ({sum(outcome.passed for outcome in outcomes)}/{len(outcomes)} gates pass; decision → "
                  f"{escape(str(target))})")
    raise typer.Exit(0 if promoted else 1)


@scripts_app.command("list")
def scripts_list() -> None:
    """The shipped scripts: name, turns, the kinds of their moves."""
    table = Table("name", "turns", "moves", "note")
    for script in shipped_scripts():
        table.add_row(script.name, str(script.turns), " → ".join(move.kind for move in script.moves), script.note)
    console.print(table)


@scripts_app.command("ground")
def scripts_ground(logs: Annotated[list[Path], typer.Argument(help="JSONL logs of chat exchanges (OpenAI shape).")],
                   out: Annotated[Path, typer.Option("--out", help="Script file to write (.yaml).")],
                   prefix: Annotated[str, typer.Option(help="Name prefix of the scripts.")] = "grounded") -> None:
    """Write scripts from real users' follow-ups in logs (redacted), for `refcal drill --scripts FILE`."""
    from refcal.drills.grounding import ground, scripts_yaml

    missing = [str(path) for path in logs if not path.is_file()]
    if missing:
        raise fail(f"no such file: {', '.join(missing)}", EXIT_INPUT)
    grounded = ground(logs, prefix)
    for line in grounded.skipped_lines[:5]:
        errors_console.print(f"skipped {line}", highlight=False, markup=False)
    if len(grounded.skipped_lines) > 5:
        errors_console.print(f"… and {len(grounded.skipped_lines) - 5} more unreadable lines", highlight=False)
    kinds = ", ".join(f"{kind} {count}" for kind, count in grounded.classified.most_common()) or "none"
    console.print(f"{grounded.follow_ups} follow-ups, {sum(grounded.classified.values())} classified ({kinds})",
                  highlight=False)
    if not grounded.scripts:
        raise fail("no script could be built: a script needs two or more classified follow-ups", EXIT_INPUT)
    write_atomic(out, scripts_yaml(grounded.scripts))
    load_scripts(out)  # what was written must read back as scripts
    console.print(f"wrote {len(grounded.scripts)} scripts → {out}", highlight=False)


def main() -> None:
    """Entry point that turns deliberate errors into one line and keeps tracebacks for bugs."""
    try:
        app()
    except RefcalError as error:  # pragma: no cover - commands catch their own; this is a backstop
        errors_console.print(f"error: {error}")
        sys.exit(EXIT_INPUT)
    except TargetError as error:  # pragma: no cover
        errors_console.print(f"error: {error}")
        sys.exit(EXIT_TARGET)



def __getattr__(name: str) -> object:
    """`click_command`: the app as a click command, for the docs' CLI reference (mkdocs-click); built on demand."""
    if name == "click_command":
        return typer.main.get_command(app)
    raise AttributeError(name)
