"""`refcal promote`: check promotion gates against candidate receipts and their evidence; PROMOTED or REJECTED.

Exit codes: 0 promoted; 1 rejected; 2 bad input (a gates file that cannot be read).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from refcal.bench.freeze import DEFAULT_LOCKS
from refcal.cli.common import DEFAULT_STORE, LocksOption, StoreOption, console, damaged_store, fail
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_NO, EXIT_OK
from refcal.errors import InputFileError
from refcal.files import write_atomic
from refcal.promote.evidence import promotion_record, read_evidence
from refcal.promote.gates import evaluate, read_gates
from refcal.store.database import check_database_file

promote_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `promote` to the `refcal` app."""
    parent.add_typer(promote_app)


@promote_app.command()
def promote(
    candidates: Annotated[list[str], typer.Argument(help="Candidate receipts (receipt.json files or run folders).")],
    gates: Annotated[Path, typer.Option("--gates", help="Gates file (TOML).")],
    baseline: Annotated[str | None, typer.Option(help="Baseline receipt for `no_regression`.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the decision (default: promotion.json beside "
                                                  "the first candidate).")] = None,
    locks: LocksOption = DEFAULT_LOCKS,
    store: StoreOption = DEFAULT_STORE,
    strict: Annotated[bool, typer.Option(help="Fail every gate its bench cannot decide at its size.")] = False,
) -> None:
    """Check every gate against the receipts and their evidence; PROMOTED (exit 0) or REJECTED (exit 1)."""
    try:
        the_gates = read_gates(gates)
        check_database_file(store)  # a --store that is a folder, a device or damaged is refused, never ignored
        evidence = [read_evidence(candidate, store) for candidate in candidates]
        base = read_evidence(baseline, store) if baseline else None
        outcomes = evaluate(the_gates, evidence, base, locks, strict)
    except InputFileError as error:  # a gates file, a lock, or a damaged --store
        raise fail(str(error), EXIT_INPUT) from None
    except sqlite3.DatabaseError as error:
        raise damaged_store(store, error) from None
    table = Table("gate", "claim", "figures", "result", title=f"promotion gates ({escape(str(gates))})")
    for outcome in outcomes:
        result = "[green]PASS[/green]" if outcome.passed else "[red]FAIL[/red]\n" + "\n".join(
            escape(problem) for problem in outcome.problems)
        if outcome.underpowered:
            result += "\n[yellow]" + "\n".join(escape(why) for why in outcome.underpowered) + "[/yellow]"
        table.add_row(escape(f"{gates.name}:{outcome.gate.line}"),
                      escape(f"{outcome.gate.claim} on {outcome.gate.bench}"),
                      escape("\n".join(outcome.figures) or "—"), result)
    console.print(table)
    promoted = all(outcome.passed for outcome in outcomes)
    record = promotion_record(promoted, gates, outcomes, evidence, base)
    target = out or Path(evidence[0].path).parent / "promotion.json"
    write_atomic(target, record)
    console.print(("[b green]PROMOTED[/b green]" if promoted else "[b red]REJECTED[/b red]")
                  + f"  ({sum(outcome.passed for outcome in outcomes)}/{len(outcomes)} gates pass; decision → "
                  f"{escape(str(target))})")
    raise typer.Exit(EXIT_OK if promoted else EXIT_NO)
