"""`refcal bench`: list, show, freeze and verify benches, and scaffold a curveball bench of uncovered classes.

Exit codes: 0 done; 1 `verify` found a frozen bench that changed or cannot be loaded; 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from refcal.bench import list_benches, load_bench
from refcal.bench.curveball import catalogue, corpus_classes, scaffold_rows, uncovered, write_scaffold
from refcal.bench.freeze import (
    DEFAULT_LOCKS,
    BenchLock,
    changes,
    make_lock,
    read_locks,
    spec_for_lock,
    spec_from_lock,
    write_lock,
)
from refcal.cli.common import LocksOption, console, fail, parse_mapping
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_NO, EXIT_OK
from refcal.errors import BenchError, InputFileError, MissingExtraError
from refcal.metrics.power import bench_power

bench_app = typer.Typer(help="Inspect benches.", no_args_is_help=True)


def register(parent: typer.Typer) -> None:
    """Add the `bench` group to the `refcal` app."""
    parent.add_typer(bench_app, name="bench")


@bench_app.command("list")
def bench_list() -> None:
    """Benches known by name."""
    table = Table("name", "kind", "description")
    for row in list_benches():
        table.add_row(*(escape(cell) for cell in row))
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
    try:
        options = {key: value for key, value in (("columns", parse_mapping(columns, "--columns")),
                                                 ("expect_map", parse_mapping(expect_map, "--expect-map"))) if value}
        loaded = load_bench(bench, options.get("columns"), options.get("expect_map"))
        path, written = write_lock(make_lock(loaded, spec_for_lock(bench, locks), note, options), locks)
    except (BenchError, InputFileError, MissingExtraError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    state = "frozen" if written else "already frozen, unchanged"
    console.print(f"{loaded.name}: {state} — {len(loaded.items)} items, {loaded.digest} → {path}", highlight=False,
                  markup=False)


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
        table.add_row(escape(lock.name), escape(str(path)), str(lock.items), escape(lock.frozen_at), escape(state))
    console.print(table)
    raise typer.Exit(EXIT_NO if failed else EXIT_OK)


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
                  f"{2 * pairs * len(fresh)} placeholder items → {out}", highlight=False, markup=False)
    console.print(f"next: replace every TODO prompt by hand (never from a training corpus), then "
                  f"`refcal bench freeze {out}` before the training run", highlight=False, markup=False)


@bench_app.command("show")
def bench_show(
    bench: Annotated[str, typer.Argument(help="Bench name or .jsonl/.csv path.")],
    columns: Annotated[str | None, typer.Option(help="CSV: field=column,...")] = None,
    expect_map: Annotated[str | None, typer.Option(help="CSV: value=refuse|comply,...")] = None,
    items: Annotated[int, typer.Option(help="Items to print.")] = 5,
) -> None:
    """Digest, class counts and the first items of a bench."""
    try:
        loaded = load_bench(bench, parse_mapping(columns, "--columns"), parse_mapping(expect_map, "--expect-map"))
    except (BenchError, MissingExtraError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    console.print(f"[b]{escape(loaded.name)}[/b]  {len(loaded.items)} items  digest {loaded.digest}", highlight=False)
    table = Table("class", "refuse", "comply")
    for klass, counts in loaded.class_counts().items():
        table.add_row(escape(klass), str(counts.get("refuse", 0)), str(counts.get("comply", 0)))
    console.print(table)
    for item in loaded.items[:items]:
        console.print(f"{item.id} [{item.expect}, {item.klass}] {item.prompt}", highlight=False, markup=False)


@bench_app.command("power")
def bench_power_command(
    bench: Annotated[str, typer.Argument(help="Bench name or .jsonl/.csv path.")],
    rate: Annotated[float, typer.Option(help="Refusal rate assumed on must-refuse items.", min=0, max=1)] = 0.9,
    false_rate: Annotated[float, typer.Option(help="False-refusal rate assumed on benign items.", min=0, max=1)] = 0.05,
    delta: Annotated[float, typer.Option(help="The change to detect, on either side.", min=0.001, max=1)] = 0.1,
    floor: Annotated[float, typer.Option(help="A refusal-floor threshold to check.", min=0, max=1)] = 0.8,
    columns: Annotated[str | None, typer.Option(help="CSV: field=column,...")] = None,
    expect_map: Annotated[str | None, typer.Option(help="CSV: value=refuse|comply,...")] = None,
) -> None:
    """What the bench can decide: per class and overall, the smallest drop in refusal and rise in false
    refusal a drill detects against a baseline of the same size (two-sided z-test, 80% power, α = 0.05
    overall and α / classes per class, as `no_regression` tests), the items per side a change of --delta
    needs, and whether a floor gate can be met and missed."""
    try:
        loaded = load_bench(bench, parse_mapping(columns, "--columns"), parse_mapping(expect_map, "--expect-map"))
    except (BenchError, MissingExtraError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    rows = bench_power(loaded.class_counts(), rate, false_rate, delta, floor)

    def share(value: float | None) -> str:
        return "none" if value is None else f"{value:.2f}"

    table = Table("class", "α", "refuse", "drop", "items", "comply", "rise", "items", "floor")
    for row in rows:
        decidable = "yes" if row.floor.resolvable else "cannot pass" if not row.floor.can_pass else "cannot fail"
        table.add_row(escape(row.name), f"{row.alpha:.3g}", str(row.refuse), share(row.refusal_drop),
                      str(row.needed_refuse or "-"), str(row.comply), share(row.false_refusal_rise),
                      str(row.needed_comply or "-"), decidable)
    console.print(f"[b]{escape(loaded.name)}[/b]  {len(loaded.items)} items. drop: the smallest fall from a "
                  f"refusal rate of {rate:g} it detects; rise: the smallest rise from a false-refusal rate of "
                  f"{false_rate:g}; items: per side, for a change of {delta:g}; floor: can a gate "
                  f"`refusal_floor >= {floor:g}` be met and missed", highlight=False)
    console.print(table)
