"""`refcal watch ack|resolve|ledger`: the drift ledger's commands, added to a watch app by `register`.

    refcal watch ack ENTRY [--by NAME]                         someone owns the drift
    refcal watch resolve ENTRY --receipt R [--promotion P]     close it on a promoted receipt within limits
    refcal watch ledger [--html FILE]                          the entries, median times, 14-day warnings
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from refcal.cli.common import DEFAULT_STORE, StoreOption, console, errors_console, fail
from refcal.cli.exit_codes import EXIT_INPUT
from refcal.errors import MissingExtraError
from refcal.files import write_atomic
from refcal.watch.ledger import (
    Ledger,
    LedgerError,
    age,
    is_stale,
    parse_time,
    summarise,
    time_to_correct,
    time_to_detect,
)
from refcal.watch.ledger_html import duration, ledger_page

ledger_app = typer.Typer()


def register(watch_app: typer.Typer) -> None:
    """Add `ack`, `resolve` and `ledger` to the `refcal watch` app."""
    watch_app.add_typer(ledger_app)


EntryArgument = Annotated[int, typer.Argument(help="Ledger entry id (`refcal watch ledger`).")]


def _default_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "someone"


@ledger_app.command("ack")
def ack(entry: EntryArgument, by: Annotated[str | None, typer.Option(help="Who owns it (default: login name).")]
        = None, store: StoreOption = DEFAULT_STORE) -> None:
    """Acknowledge a drift entry: someone is on it."""
    with Ledger(store) as ledger:
        try:
            acked = ledger.ack(entry, by or _default_name())
        except LedgerError as error:
            raise fail(str(error), EXIT_INPUT) from None
    console.print(f"entry {acked.id} ({escape(acked.metric)}/{escape(acked.segment)}) acknowledged by "
                  f"{escape(acked.acked_by or '')}", highlight=False)


@ledger_app.command("resolve")
def resolve(entry: EntryArgument,
            receipt: Annotated[str, typer.Option("--receipt", help="receipt.json or its run folder.")],
            promotion: Annotated[Path | None, typer.Option(help="The promotion decision naming the receipt "
                                                                "(default: promotion.json beside it).")] = None,
            store: StoreOption = DEFAULT_STORE) -> None:
    """Resolve a drift entry: only a promoted receipt showing the metric back within the entry's limit does."""
    with Ledger(store) as ledger:
        try:
            resolved = ledger.resolve(entry, receipt, promotion)
        except LedgerError as error:
            raise fail(str(error), EXIT_INPUT) from None
    console.print(f"[green]resolved[/green] entry {resolved.id}: {escape(resolved.resolution or '')}; time to "
                  f"correct {duration(time_to_correct(resolved))}", highlight=False)


@ledger_app.command("ledger")
def ledger(html: Annotated[Path | None, typer.Option("--html", help="Also write the page with control charts.")]
           = None, store: StoreOption = DEFAULT_STORE) -> None:
    """The drift ledger: every entry, median time to detect and to correct, entries open past 14 days."""
    now = datetime.now(UTC)
    with Ledger(store) as book:
        entries, points = book.entries(), book.windows()
    table = Table(title="drift ledger")
    for column in ("id", "metric", "segment", "status", "detected", "TTD", "TTC", "age"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        stale = is_stale(entry, now)
        table.add_row(str(entry.id), escape(entry.metric), escape(entry.segment), entry.status,
                      _minute(entry.detected_at), duration(time_to_detect(entry)), duration(time_to_correct(entry)),
                      duration(age(entry, now)), style="yellow" if stale else None)
    console.print(table)
    summary = summarise(entries, now)
    console.print(f"{summary.entries} entries ({summary.open} open, {summary.acked} acked, {summary.resolved} "
                  f"resolved); median time to detect {duration(summary.median_time_to_detect)}, to correct "
                  f"{duration(summary.median_time_to_correct)}", highlight=False)
    if summary.stale:
        errors_console.print(f"[yellow]warning:[/yellow] open for more than 14 days: entries "
                             f"{', '.join(map(str, summary.stale))}", highlight=False)
    if html is not None:
        try:
            write_atomic(html, ledger_page(entries, points, now))
        except MissingExtraError as error:
            raise fail(str(error), EXIT_INPUT) from None
        console.print(f"ledger page → {escape(str(html))}", highlight=False)


def _minute(moment: str) -> str:
    """An ISO time to the minute, in UTC: what a table row has room for."""
    return parse_time(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M")

