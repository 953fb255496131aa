"""The CLI's consoles, its one way to stop on a user error (one red line, an exit code), and the options and
option parsers every command group shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from refcal.errors import BenchError

DEFAULT_STORE = Path(".refcal") / "refcal.db"
StoreOption = Annotated[Path, typer.Option("--store", envvar="REFCAL_STORE", help="Run database.")]
LocksOption = Annotated[Path, typer.Option("--locks", envvar="REFCAL_LOCKS", help="Folder of bench locks "
                                                                                  "(`refcal bench freeze`).")]

console = Console()
errors_console = Console(stderr=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print `message` as one unwrapped error line and return the Exit to raise."""
    errors_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def parse_mapping(text: str | None, option: str) -> dict[str, str] | None:
    """KEY=VALUE pairs separated by commas (--columns, --expect-map); None when the option is not given."""
    if not text:
        return None
    pairs = [part.split("=", 1) for part in text.split(",") if part]
    if any(len(pair) != 2 for pair in pairs):
        raise BenchError(f"{option} takes KEY=VALUE pairs separated by commas, got '{text}'")
    return {key.strip(): value.strip() for key, value in pairs}
