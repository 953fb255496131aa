"""`refcal scripts`: the shipped multi-turn pressure scripts, and new ones grounded in real users' follow-ups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from refcal.cli.common import console, errors_console, fail
from refcal.cli.exit_codes import EXIT_INPUT
from refcal.drills.scripts import load_scripts, shipped_scripts
from refcal.files import write_atomic

scripts_app = typer.Typer(help="Multi-turn pressure scripts for slow drills.", no_args_is_help=True)


def register(parent: typer.Typer) -> None:
    """Add the `scripts` group to the `refcal` app."""
    parent.add_typer(scripts_app, name="scripts")


@scripts_app.command("list")
def scripts_list() -> None:
    """The shipped scripts: name, turns, the kinds of their moves."""
    table = Table("name", "turns", "moves", "note")
    for script in shipped_scripts():
        table.add_row(escape(script.name), str(script.turns), escape(" → ".join(move.kind for move in script.moves)),
                      escape(script.note))
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
                  highlight=False, markup=False)
    if not grounded.scripts:
        raise fail("no script could be built: a script needs two or more classified follow-ups", EXIT_INPUT)
    write_atomic(out, scripts_yaml(grounded.scripts))
    load_scripts(out)  # what was written must read back as scripts
    console.print(f"wrote {len(grounded.scripts)} scripts → {out}", highlight=False, markup=False)
