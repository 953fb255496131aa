"""The CLI's consoles and its one way to stop on a user error (one red line, an exit code)."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
errors_console = Console(stderr=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print `message` as one unwrapped error line and return the Exit to raise."""
    errors_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
