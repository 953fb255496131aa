"""`refcal watch`: sweep production logs for refusal drift (and the drift ledger's commands).

    refcal watch LOG… [--every 10s] [--window 500] [--once] [--judge cascade|markers] [--map F=path,…]
                      [--baseline-windows 10] [--alert-jsonl FILE] [--webhook URL] [--keep-text] [--store DB]
    refcal watch ack|resolve|ledger …   (refcal.cli.watch_ledger)

Ctrl-C stops after the batch in hand is committed; the next start resumes from there.
"""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from refcal.cli import watch_ledger
from refcal.cli.common import DEFAULT_STORE, StoreOption, console, errors_console, fail
from refcal.cli.exit_codes import EXIT_INPUT
from refcal.errors import MissingExtraError, StoreError
from refcal.watch.alerts import JsonlSink, Sink, TerminalSink, WebhookSink
from refcal.watch.exchanges import FIELDS, parse_field_map

if TYPE_CHECKING:
    from refcal.watch.sweep import PassReport, Sweep

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class _DefaultToSweep(TyperGroup):
    """`refcal watch LOG…` runs the sweep; ack, resolve and ledger stay subcommands."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["sweep", *args]
        return super().parse_args(ctx, args)


watch_app = typer.Typer(cls=_DefaultToSweep, no_args_is_help=True,
                        help="`refcal watch LOG… [--every 10s] [--window 500] [--once]` sweeps JSONL logs of chat "
                             "exchanges for refusal drift (control limits per window, alerts, a drift ledger); the "
                             "commands below work the ledger.")


def parse_duration(text: str) -> float:
    """'10s', '500ms', '2m', '1h' or plain seconds."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"--every takes a positive duration such as 10s, 500ms, 2m or 1h, got '{text}'")
    return float(match.group(1)) * _UNITS[match.group(2)]


@watch_app.command("sweep")
def sweep(
    logs: Annotated[list[Path], typer.Argument(help="JSONL logs of chat exchanges (followed across rotation).")],
    every: Annotated[str, typer.Option(help="Time between passes (10s, 500ms, 2m).")] = "10s",
    window: Annotated[int, typer.Option(min=1, help="Exchanges per window, per segment.")] = 500,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (tests, cron).")] = False,
    judge: Annotated[str, typer.Option(help="cascade (markers → head) or markers (the fast lanes only).")]
    = "cascade",
    field_map: Annotated[str | None, typer.Option("--map", help=f"Other log shapes: FIELD=dotted.path,… with FIELD "
                                                                f"one of {', '.join(FIELDS)}.")] = None,
    baseline_windows: Annotated[int, typer.Option(min=1, help="Windows that set each baseline rate.")] = 10,
    alert_jsonl: Annotated[Path | None, typer.Option(help="Also append alerts to this JSONL file.")] = None,
    webhook: Annotated[str | None, typer.Option(help="Also POST alerts here (retried; kept until delivered).")]
    = None,
    keep_text: Annotated[bool, typer.Option("--keep-text", help="Keep raw prompts and responses in alerts, "
                                                                "samples and quarantine (redacted by default).")]
    = False,
    name: Annotated[str, typer.Option(help="Sweep name: separate sweeps into one store keep separate state.")]
    = "default",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Sweep LOG… for refusals that look false; alert when a rate crosses its control limit."""
    try:
        pause = parse_duration(every)
        parse_field_map(field_map)
        if judge not in ("cascade", "markers"):
            raise ValueError(f"--judge must be cascade or markers, got '{judge}'")
        sinks = _sinks(alert_jsonl, webhook)
    except ValueError as error:
        raise fail(str(error), EXIT_INPUT) from None
    for path in logs:
        if path.is_dir():
            raise fail(f"{path} is a directory: give the log files", EXIT_INPUT)
        if not path.exists():
            errors_console.print(f"{escape(str(path))}: not there yet; followed once it appears", highlight=False)
    from refcal.watch.sweep import Sweep, SweepSettings  # the markers prefilter is built on import

    settings = SweepSettings(logs=logs, store=store, window=window, judge=judge, fields=field_map,  # type: ignore[arg-type]
                             baseline_windows=baseline_windows, keep_text=keep_text, name=name)
    try:
        with Sweep(settings, sinks=sinks) as running:
            _loop(running, pause, once)
    except (MissingExtraError, StoreError) as error:
        raise fail(str(error), EXIT_INPUT) from None


def _sinks(alert_jsonl: Path | None, webhook: str | None) -> list[Sink]:
    sinks: list[Sink] = [TerminalSink()]
    if alert_jsonl is not None:
        sinks.append(JsonlSink(alert_jsonl))
    if webhook is not None:
        sinks.append(WebhookSink(webhook))
    return sinks


def _loop(running: Sweep, pause: float, once: bool) -> None:
    """Pass after pass until Ctrl-C (a first one stops after the batch in hand; a second one is the usual
    KeyboardInterrupt)."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        while True:
            report = running.run_pass(stop.is_set)
            _print_pass(report, running)
            if once or stop.wait(pause):  # True as soon as Ctrl-C is pressed while waiting
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    if stop.is_set():
        console.print("stopped; everything read so far is committed", highlight=False)


def _print_pass(report: PassReport, running: Sweep) -> None:
    totals = running.state.totals
    console.print(f"pass {report.number}: {report.lines} lines, {report.exchanges} exchanges, {report.refusals} "
                  f"refusals ({report.likely_false} likely false), {report.malformed} malformed, {report.windows} "
                  f"windows closed, {len(report.breaches)} breaches"
                  + (f", review sample → run {report.review_run}" if report.review_run else "")
                  + f"  [total {totals.exchanges} exchanges, {totals.malformed} quarantined]", highlight=False,
                  markup=False, soft_wrap=True)
    for note in report.notes:
        errors_console.print(f"note: {escape(note)}", highlight=False)
    if report.malformed:
        for row in running.quarantined()[-min(report.malformed, 3):]:
            errors_console.print(f"quarantined {escape(row['file'])}:{row['line']}: {escape(row['reason'])}",
                                 highlight=False, soft_wrap=True)


watch_ledger.register(watch_app)  # ack, resolve, ledger: listed after `sweep`


def register(parent: typer.Typer) -> None:
    """Add the `watch` group to the `refcal` app."""
    parent.add_typer(watch_app, name="watch")
