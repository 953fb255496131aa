"""`refcal review`: people read sampled attempts and label them; the labels flow back to the judges.

    refcal review [RUN…] [--reviewer NAME] [--second-opinion]   the review page (127.0.0.1 by default)
    refcal review export [RUN…] --out FILE                       labels as a labels file
    refcal review import FILE                                    labels back into the run database
    refcal review agreement [RUN…]                               κ between reviewers, judge vs reviewers
"""

from __future__ import annotations

import getpass
import re
import secrets
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from refcal.cli.common import DEFAULT_STORE, StoreOption, console, fail
from refcal.cli.exit_codes import EXIT_INPUT
from refcal.errors import InputFileError, StoreError
from refcal.files import write_atomic
from refcal.metrics.agreement import review_summary, reviewer_pairs
from refcal.records import REVIEWER
from refcal.review.labels import export_text, read_labels_file
from refcal.review.queue import DEFAULT_SIZE, ReviewSession, draw_queue
from refcal.run.session import find_run, finish
from refcal.store.runs import Store

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class _DefaultToServe(TyperGroup):
    """`refcal review [RUN…]` runs the page; export, import and agreement stay subcommands."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


review_app = typer.Typer(cls=_DefaultToServe, help="`refcal review [RUN…] [--reviewer NAME] [--second-opinion] "
                                                   "[--host H --port P]` opens the review page (one sampled attempt "
                                                   "at a time); the commands below export, import and compare labels.")


def register(parent: typer.Typer) -> None:
    """Add the `review` group to the `refcal` app."""
    parent.add_typer(review_app, name="review")


RunsArgument = Annotated[list[str] | None, typer.Argument(help="Run ids or output directories (default: all runs; "
                                                               "the page: the latest run).")]


def _default_reviewer() -> str:
    try:
        name = re.sub(r"[^A-Za-z0-9._@-]", "", getpass.getuser())
    except Exception:  # no login name (some containers)
        name = ""
    return name if REVIEWER.match(name) else "reviewer"


def _run_ids(store: Store, runs: list[str] | None, latest_only: bool = False) -> list[str]:
    if runs:
        return [find_run(store, run).run_id for run in runs]
    every = [run.run_id for run in store.list_runs()]
    if not every:
        raise StoreError(f"no runs in {store.path}: drill first (refcal drill)")
    return every[-1:] if latest_only else every


@review_app.command("serve", hidden=True)
def review_serve(runs: RunsArgument = None,
                 reviewer: Annotated[str, typer.Option(help="Your name as labels record it.")] = "",
                 size: Annotated[int, typer.Option(min=1, help="Attempts to draw for review.")] = DEFAULT_SIZE,
                 second_opinion: Annotated[bool, typer.Option("--second-opinion", help="Label what others labelled "
                                                                                       "(for κ).")] = False,
                 host: Annotated[str, typer.Option(help="Address to bind (a token is required off loopback).")]
                 = "127.0.0.1",
                 port: Annotated[int, typer.Option(help="Port.")] = 8765,
                 seed: Annotated[str, typer.Option(help="Seed of the sampling.")] = "",
                 store: StoreOption = DEFAULT_STORE) -> None:
    """Start the review page; on exit, rewrite the reviewed runs' receipts and reports."""
    from refcal.review.page import serve

    name = reviewer or _default_reviewer()
    if not REVIEWER.match(name):
        raise fail(f"--reviewer '{name}': use letters, digits and . _ @ - only", EXIT_INPUT)
    try:
        database = Store(store)
        run_ids = _run_ids(database, runs, latest_only=True)
        picks = draw_queue(database, run_ids, name, size, second_opinion, seed)
    except (StoreError, InputFileError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    token = None if host in LOCAL_HOSTS else secrets.token_urlsafe(24)
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    console.print(f"{len(picks)} attempts to review for {name} from {', '.join(run_ids)}", highlight=False,
                  markup=False)
    console.print(f"open http://{shown}:{port}/" + (f"?token={token}" if token else "") + "  (Ctrl+C to stop)",
                  highlight=False, markup=False, soft_wrap=True)
    try:
        serve(ReviewSession(database, name, picks), host=host, port=port, token=token)
    finally:
        for run_id in run_ids:
            if database.labels([run_id]):
                receipt = finish(database, run_id)
                console.print(f"rewrote {Path(database.get_run(run_id).out_dir) / 'receipt.json'}"
                              + (f" — {receipt.review.warning}" if receipt.review and receipt.review.warning else ""),
                              highlight=False, markup=False)
        database.close()


@review_app.command("export")
def review_export(runs: RunsArgument = None,
                  out: Annotated[Path, typer.Option("--out", help="Labels file to write (JSONL).")]
                  = Path("labels.jsonl"),
                  reviewer: Annotated[str | None, typer.Option(help="Only this reviewer's labels.")] = None,
                  store: StoreOption = DEFAULT_STORE) -> None:
    """Write labels with their prompts and responses: `refcal judge eval --labels` reads the file."""
    try:
        with Store(store) as database:
            labels = [label for label in database.labels(_run_ids(database, runs))
                      if reviewer is None or label.reviewer == reviewer]
            rows = [(label, database.attempt(label.run_id, label.variant_id)) for label in labels]
    except (StoreError, InputFileError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    write_atomic(out, export_text(rows))
    console.print(f"exported {len(rows)} labels → {out}", highlight=False, markup=False)


@review_app.command("import")
def review_import(source: Annotated[Path, typer.Argument(help="A labels file from `refcal review export`.")],
                  store: StoreOption = DEFAULT_STORE) -> None:
    """Read labels back (all or nothing: the file is checked whole, and every attempt must be in the store)."""
    try:
        labels = read_labels_file(source)
        with Store(store) as database:
            database.add_labels(labels)
    except (InputFileError, StoreError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    console.print(f"imported {len(labels)} labels from {source}", highlight=False, markup=False)


@review_app.command("agreement")
def review_agreement(runs: RunsArgument = None, store: StoreOption = DEFAULT_STORE) -> None:
    """Cohen's κ between reviewers on shared attempts, and the judge against the reviewers per lane."""
    try:
        with Store(store) as database:
            run_ids = _run_ids(database, runs)
            labels = database.labels(run_ids)
            attempts = {(label.run_id, label.variant_id): database.attempt(label.run_id, label.variant_id)
                        for label in labels}
    except (StoreError, InputFileError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    if not labels:
        raise fail("no labels yet: review first (refcal review)", EXIT_INPUT)
    pairs = Table("reviewer", "reviewer", "shared", "same label", "Cohen's κ", title="between reviewers")
    for pair in reviewer_pairs(labels):
        pairs.add_row(escape(pair.first), escape(pair.second), str(pair.shared), f"{pair.agreement:.2f}",
                      f"{pair.kappa:.3f}")
    console.print(pairs if pairs.row_count else "no attempt has labels from two reviewers yet (--second-opinion)")
    summary = review_summary(labels, attempts)
    if summary is not None:
        from refcal.report.terminal import print_review

        print_review(summary, console)
        console.print(f"{len(labels)} labels by {escape(', '.join(summary.reviewers))}", highlight=False)
