"""A drill from start to receipt, as a library call: plan a run, send it, write receipt and report.

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import json
from pathlib import Path

from refcal.attempt import Attempt
from refcal.bench.items import Bench
from refcal.drills.runner import AttemptCallback, run_drill_async
from refcal.errors import StoreError
from refcal.judges.base import Judge
from refcal.receipts import Receipt, build_receipt, write_atomic, write_receipt
from refcal.report.html import render_html
from refcal.store import RunRecord, Store
from refcal.targets.base import Target

RUN_POINTER = "run.json"
"""Written into the output directory so `--resume DIR` and `report DIR` find the run."""


def new_run(store: Store, bench: Bench, target: Target, judge: Judge, *, target_spec: str, out_root: Path,
            out_dir: Path | None = None, limit: int | None = None, concurrency: int = 4,
            use_cache: bool = True, api_key_env: str | None = None, judge_target: str | None = None,
            judge_head: str | None = None) -> RunRecord:
    """Record a new run (before any request), and point its output directory at it."""
    run = RunRecord(bench_name=bench.name, bench_digest=bench.digest, bench_origin=bench.origin,
                    items=[item.model_dump(mode="json") for item in bench.items], target_spec=target_spec,
                    api_key_env=api_key_env, fingerprint=target.fingerprint.model_dump(mode="json"),
                    judge_name=judge.name, judge_version=judge.version, judge_target=judge_target,
                    judge_head=judge_head, limit=limit, concurrency=concurrency, use_cache=use_cache, out_dir="")
    directory = (out_dir or out_root / run.run_id).resolve()
    run = run.model_copy(update={"out_dir": str(directory)})
    store.create_run(run)
    write_atomic(directory / RUN_POINTER, json.dumps({"run_id": run.run_id, "store": str(store.path.resolve())}))
    return run


def find_run(store: Store, reference: str) -> RunRecord:
    """A run by id, or by the output directory holding its run.json."""
    pointer = Path(reference) / RUN_POINTER
    if pointer.is_file():
        reference = json.loads(pointer.read_text(encoding="utf-8"))["run_id"]
    return store.get_run(reference)


def check_resumable(run: RunRecord, target: Target, judge: Judge) -> None:
    """A resumed run must talk to the same target and judge, or its halves would not add up."""
    if target.fingerprint.model_dump(mode="json") != run.fingerprint:
        raise StoreError(f"run {run.run_id} was drilled on a different target fingerprint; "
                         "resume it with the same target and generation settings")
    if (judge.name, judge.version) != (run.judge_name, run.judge_version):
        raise StoreError(f"run {run.run_id} was judged by {run.judge_name} {run.judge_version}, "
                         f"not {judge.name} {judge.version}")


async def drill_async(run: RunRecord, target: Target, judge: Judge, store: Store,
                      on_attempt: AttemptCallback | None = None) -> Receipt:
    """Send what remains of `run` (target already started), then write receipt and report."""
    await run_drill_async(run, target, judge, store, on_attempt)
    return finish(store, run.run_id)


def finish(store: Store, run_id: str) -> Receipt:
    """Write OUT/receipt.json and OUT/report.html from the store."""
    run = store.get_run(run_id)
    attempts: list[Attempt] = list(store.attempts(run_id))
    receipt = build_receipt(run, attempts, store.latest_agreement(run.judge_name, run.judge_version))
    out_dir = Path(run.out_dir)
    write_receipt(receipt, out_dir)
    write_atomic(out_dir / "report.html", render_html(receipt, attempts))
    return receipt
