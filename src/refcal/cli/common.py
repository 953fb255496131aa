"""The CLI's consoles, its one way to stop on a user error (one red line, an exit code), and the options and
option parsers every command group shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from refcal.cli.exit_codes import EXIT_INPUT
from refcal.errors import BenchError

DEFAULT_STORE = Path(".refcal") / "refcal.db"
StoreOption = Annotated[Path, typer.Option("--store", envvar="REFCAL_STORE", help="Run database.")]
LocksOption = Annotated[Path, typer.Option("--locks", envvar="REFCAL_LOCKS", help="Folder of bench locks "
                                                                                  "(`refcal bench freeze`).")]

console = Console()
errors_console = Console(stderr=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print `message` as one unwrapped error line and return the Exit to raise. The message is plain text (it
    quotes file names, fields and values users wrote): never read as markup."""
    errors_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def damaged_store(store: Path, error: Exception) -> typer.Exit:
    """The Exit for an SQLite error that surfaces past the checks at open (a page damaged inside the file)."""
    return fail(f"{store}: damaged or not a run database: {error}", EXIT_INPUT)


def parse_mapping(text: str | None, option: str) -> dict[str, str] | None:
    """KEY=VALUE pairs separated by commas (--columns, --expect-map); None when the option is not given."""
    if not text:
        return None
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise BenchError(f"{option} takes KEY=VALUE pairs separated by commas, got '{text}'")
    mapping: dict[str, str] = {}
    for key, value in ((key.strip(), value.strip()) for key, value in pairs):
        if key in mapping:
            raise BenchError(f"{option} maps '{key}' twice ('{mapping[key]}' and '{value}'): give it once")
        mapping[key] = value
    return mapping
