"""`refcal recal check TARGET`: is a base ready to be recalibrated? (exit 0 ready, 1 not ready, 2 bad input)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from refcal.console import DEFAULT_STORE, StoreOption, console, fail
from refcal.errors import FatalTargetError, MissingExtraError, RefcalError
from refcal.receipts import write_atomic

EXIT_READY, EXIT_NOT_READY, EXIT_INPUT, EXIT_TARGET = 0, 1, 2, 3


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
    from refcal.drills.session import drill_async, new_run
    from refcal.judges import make_judge
    from refcal.recal.readiness import assess, readiness_bench
    from refcal.store import Store
    from refcal.targets import GenerationParams, make_target

    try:
        bench = readiness_bench(lookalikes)
        the_target = make_target(target, params=GenerationParams(max_tokens=max_tokens), concurrency=concurrency)
        judge = make_judge("cascade")

        async def run() -> object:
            async with the_target:
                with Store(store) as database:
                    record = new_run(database, bench, the_target, judge, target_spec=the_target.description,
                                     out_root=Path("runs"), out_dir=out, concurrency=concurrency)
                    return await drill_async(record, the_target, judge, database)
        receipt = asyncio.run(run())
        verdict = assess(receipt)  # type: ignore[arg-type]
    except FatalTargetError as error:
        raise fail(f"target unavailable: {error}", EXIT_TARGET) from None
    except (RefcalError, MissingExtraError, ValueError) as error:
        raise fail(str(error), EXIT_INPUT) from None
    write_atomic(out / "readiness.json", verdict.model_dump_json(indent=2) + "\n")
    routine = verdict.routine_refusal
    console.print(f"routine refusal {routine.k}/{routine.n}; unusable {verdict.unusable:.0%}; look-alike false "
                  f"refusal {verdict.lookalike_refusal.k if verdict.lookalike_refusal else 0}/"
                  f"{verdict.lookalike_refusal.n if verdict.lookalike_refusal else 0}", highlight=False)
    if verdict.ready:
        console.print(f"[green]READY[/green] to recalibrate ({out / 'readiness.json'})")
        raise typer.Exit(EXIT_READY)
    console.print("[red]NOT READY[/red]: " + "; ".join(verdict.reasons) + " — fix the base before "
                  "recalibrating it")
    raise typer.Exit(EXIT_NOT_READY)
