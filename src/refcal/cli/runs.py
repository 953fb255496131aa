"""`refcal report` and `refcal runs`: the runs in the store, and a run's receipt and report rewritten from it."""

from __future__ import annotations

import sqlite3
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from refcal.cli.common import DEFAULT_STORE, StoreOption, console, damaged_store, fail
from refcal.cli.exit_codes import EXIT_INPUT
from refcal.drills.plan import planned_count
from refcal.errors import InputFileError, StoreError
from refcal.report.terminal import print_summary
from refcal.run.session import find_run, finish
from refcal.store.runs import Store

runs_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `report` and `runs` to the `refcal` app."""
    parent.add_typer(runs_app)


@runs_app.command()
def report(run: Annotated[str, typer.Argument(help="Run id or output directory.")],
           store: StoreOption = DEFAULT_STORE,
           force: Annotated[bool, typer.Option("--force", help="Replace a receipt that counts more attempts than "
                                                               "the store holds.")] = False) -> None:
    """Rewrite a run's receipt and HTML report from the store, and print its summary."""
    try:
        with Store(store) as database:
            receipt = finish(database, find_run(database, run).run_id, force=force)
            print_summary(receipt, console)
    except (StoreError, InputFileError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    except sqlite3.DatabaseError as error:
        raise damaged_store(store, error) from None


@runs_app.command()
def runs(store: StoreOption = DEFAULT_STORE) -> None:
    """List the runs in the store."""
    try:
        with Store(store) as database:
            table = Table("run", "status", "bench", "target", "attempts", "out")
            for run in database.list_runs():
                table.add_row(*(escape(cell) for cell in (
                    run.run_id, run.status, run.bench_name, run.target_spec,
                    f"{database.count_attempts(run.run_id)}/{planned_count(run)}", run.out_dir)))
    except InputFileError as error:
        raise fail(str(error), EXIT_INPUT) from None
    except sqlite3.DatabaseError as error:
        raise damaged_store(store, error) from None
    console.print(table)
