"""`refcal recal check TARGET`: is a base ready to be recalibrated? (exit 0 ready, 1 not ready, 2 bad input)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from refcal.cli.common import DEFAULT_STORE, StoreOption, console, errors_console, fail
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_NO, EXIT_OK, EXIT_UNAVAILABLE
from refcal.errors import FatalTargetError, MissingExtraError, RefcalError
from refcal.metrics.rates import percent
from refcal.recal.readiness import check_readiness

check_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `check` to the `refcal recal` group."""
    parent.add_typer(check_app)


@check_app.command("check")
def readiness_command(
    target: Annotated[str, typer.Argument(help="The base model, as a target spec (llamacpp:smollm2, hf:PATH, …).")],
    lookalikes: Annotated[str, typer.Option(help="Bench whose benign look-alikes are drilled too.")] = "starter",
    max_tokens: Annotated[int, typer.Option(min=1)] = 96,
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    out: Annotated[Path, typer.Option(help="Output folder (receipt, report, readiness.json).")] = Path("readiness"),
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Drill the base on routine instructions and benign look-alikes: a base that cannot answer routine
    requests is not ready (recalibration and drills would amplify its instability)."""
    try:
        verdict, recorded = check_readiness(target, out, store, lookalikes=lookalikes, max_tokens=max_tokens,
                                            concurrency=concurrency)
    except FatalTargetError as error:
        raise fail(f"target unavailable: {error}", EXIT_UNAVAILABLE) from None
    except (RefcalError, MissingExtraError, ValueError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    if recorded is None:
        console.print("[yellow]not recorded for training[/yellow]: this target has no weights digest (training "
                      "needs hf: or llamacpp: weights)")
    routine = verdict.routine_refusal
    console.print(f"routine refusal {routine.k}/{routine.n}; unusable {percent(verdict.unusable, 0)}; look-alike false "
                  f"refusal {verdict.lookalike_refusal.k if verdict.lookalike_refusal else 0}/"
                  f"{verdict.lookalike_refusal.n if verdict.lookalike_refusal else 0}", highlight=False)
    if verdict.ready:
        console.print(f"[green]READY[/green] to recalibrate ({escape(str(out / 'readiness.json'))})", highlight=False)
        raise typer.Exit(EXIT_OK)
    console.print("[red]NOT READY[/red]: " + escape("; ".join(verdict.reasons)) + " — fix the base before "
                  "recalibrating it", highlight=False)
    raise typer.Exit(EXIT_NO)


def readiness_gate(base: str, store: Path, force: bool) -> Any:
    """The readiness gate before training (NotReadyError without --force); a forced start is said out loud."""
    from refcal.recal.readiness import readiness_dir, require_ready
    from refcal.targets.weights import base_digest

    gate = require_ready(base, base_digest(base), readiness_dir(store), force)
    if gate.status != "ready":
        errors_console.print(f"[yellow]--force:[/yellow] training {escape(base)} although "
                             f"{escape('; '.join(gate.reasons))} (recorded in the receipt)", highlight=False)
    return gate
