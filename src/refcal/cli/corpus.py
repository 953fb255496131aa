"""`refcal corpus`: the group of the training-corpus commands, `build` (refcal.cli.corpus_build) and `check`
(refcal.cli.corpus_check)."""

from __future__ import annotations

import typer

from refcal.cli import corpus_build, corpus_check

corpus_app = typer.Typer(no_args_is_help=True)


@corpus_app.callback()
def corpus_main() -> None:
    """Training corpora: check them against every frozen bench before a training run."""


corpus_build.register(corpus_app)
corpus_check.register(corpus_app)


def register(parent: typer.Typer) -> None:
    """Add the `corpus` group to the `refcal` app."""
    parent.add_typer(corpus_app, name="corpus")
