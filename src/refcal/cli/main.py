"""The `refcal` command line: a thin layer over the library. This module holds the app, its registration and
the error hook; each command group lives in its own module and adds itself with `register(app)`.

Exit codes (refcal.cli.exit_codes): 0 done; 1 unexpected internal error; 2 bad input (bench, target spec,
options, unknown run); 3 target unavailable at start; 4 drill finished but some attempts are errors (see the
report); 130 interrupted (finish with `refcal drill --resume RUN`).
"""

from __future__ import annotations

import sys

import typer

from refcal.cli import bench, corpus, drill, guard, judge, promote, recal, review, runs, scripts, watch
from refcal.cli.common import errors_console
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_UNAVAILABLE
from refcal.errors import RefcalError, TargetError

app = typer.Typer(help="refcal: refusal calibration drills for language models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
for module in (guard, drill, runs, promote, bench, judge, review, recal, corpus, watch, scripts):
    module.register(app)  # in this order: `refcal --help` lists the commands as registered


def main() -> None:
    """Entry point that turns deliberate errors into one line and keeps tracebacks for bugs."""
    try:
        app()
    except RefcalError as error:  # pragma: no cover - commands catch their own; this is a backstop
        errors_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_INPUT)
    except TargetError as error:  # pragma: no cover
        errors_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_UNAVAILABLE)


def __getattr__(name: str) -> object:
    """`click_command`: the app as a click command, for the docs' CLI reference (mkdocs-click); built on demand."""
    if name == "click_command":
        return typer.main.get_command(app)
    raise AttributeError(name)
