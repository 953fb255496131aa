"""`refcal recal`: the group of the recalibration commands: `check` (refcal.cli.recal_check), `run`
(refcal.cli.recal_run), `sft` (refcal.cli.recal_sft) and `direction` (refcal.cli.recal_direction)."""

from __future__ import annotations

import typer

from refcal.cli import recal_check, recal_direction, recal_run, recal_sft

recal_app = typer.Typer(no_args_is_help=True)


@recal_app.callback()
def recal_main() -> None:
    """Recalibration: train or edit a model on a corpus, then drill the result again."""


for module in (recal_check, recal_run, recal_sft, recal_direction):
    module.register(recal_app)  # in this order: `refcal recal --help` lists them as registered


def register(parent: typer.Typer) -> None:
    """Add the `recal` group to the `refcal` app."""
    parent.add_typer(recal_app, name="recal")
