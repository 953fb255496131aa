"""`refcal recal run --config recal.toml`: the whole loop, one command, resumable per stage.

Exit codes: 0 PROMOTED; 1 REJECTED; 2 bad input (config, benches, gates, corpus, contamination); 3 the loop stopped
(a base not ready, an empty corpus, no trial chosen); 130 interrupted (run the same command to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from refcal.cli.common import console, fail
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NO, EXIT_OK, EXIT_STOPPED
from refcal.errors import InputFileError, RefcalError

run_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `run` to the `refcal recal` group."""
    parent.add_typer(run_app)


@run_app.command("run")
def run_command(
    config: Annotated[Path, typer.Option(help="The loop's TOML file (see refcal.recal.loop_config).")],
) -> None:
    """Readiness → baseline drills on the frozen benches → corpus → train or edit → candidate drills → the
    promotion gates against the baseline; PROMOTED or REJECTED. Stages already done with the same inputs are
    skipped, so the same command resumes after a kill."""
    from refcal.cli.progress import training_display
    from refcal.recal.loop import LoopStopped, run_loop
    from refcal.recal.loop_config import read_config

    try:
        settings = read_config(config)
    except InputFileError as error:
        raise fail(str(error), EXIT_INPUT) from None
    try:
        with training_display() as progress:
            result = run_loop(settings, lambda line: console.print(escape(line), highlight=False), progress)
    except LoopStopped as error:
        raise fail(str(error), EXIT_STOPPED) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; run `refcal recal run --config {config}` again to resume", EXIT_INTERRUPTED) \
            from None
    except (RefcalError, ValueError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    table = Table("bench", "gate", "base", "candidate", title=f"promotion gates ({escape(str(settings.gates))})")
    for row in result.rows:
        table.add_row(escape(row.bench), escape(row.claim), _cell(row.base_passed, row.base_figures),
                      _cell(row.candidate_passed, row.candidate_figures + row.problems))
    console.print(table)
    seconds = sum(run.wall_s for run in result.stages)
    console.print(("[b green]PROMOTED[/b green]" if result.promoted else "[b red]REJECTED[/b red]")
                  + f"  ({seconds:.0f} s this run; report → {escape(str(Path(result.out) / 'report.html'))})")
    raise typer.Exit(EXIT_OK if result.promoted else EXIT_NO)


def _cell(passed: bool, figures: list[str]) -> str:
    mark = "[green]PASS[/green]" if passed else "[red]FAIL[/red]"
    return "\n".join([mark, *(escape(figure) for figure in figures)])
