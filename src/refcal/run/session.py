"""A drill from start to receipt, as a library call: plan a run, send it, write receipt and report.

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import json
from pathlib import Path

from refcal.bench.freeze import check_frozen, lock_file_digest
from refcal.bench.items import Bench
from refcal.drills.attacker import Attacker
from refcal.drills.plan import check_plan
from refcal.errors import InputFileError, StoreError
from refcal.files import write_atomic
from refcal.judges import shipped_agreement
from refcal.judges.base import Judge
from refcal.receipts import Receipt, build_receipt, write_receipt
from refcal.records import AttackerPlan, Attempt, Hints, LockRef, MutationPlan, RunRecord, Script
from refcal.report.html import render_html
from refcal.review.sampling import has_review_sample, review_sample
from refcal.run.lock import run_lock
from refcal.run.runner import AttemptCallback, run_drill_async
from refcal.store.runs import Store
from refcal.targets.base import Target

REVIEW_SAMPLE = "review_sample.jsonl"
RUN_POINTER = "run.json"
"""Written into the output directory so `--resume DIR` and `report DIR` find the run."""


def new_run(store: Store, bench: Bench, target: Target, judge: Judge, *, target_spec: str, out_root: Path,
            out_dir: Path | None = None, limit: int | None = None, concurrency: int = 4,
            use_cache: bool = True, api_key_env: str | None = None, judge_target: str | None = None,
            judge_head: str | None = None, mutation: MutationPlan | None = None,
            replay: str | None = None, scripts: tuple[Script, ...] | None = None,
            attacker: AttackerPlan | None = None, to_end: bool = False, locks: Path | None = None,
            hints: Hints = "both") -> RunRecord:
    """Record a new run (before any request), and point its output directory at it. A frozen bench (a lock
    in `locks`) must still match its lock, or nothing is recorded."""
    frozen = check_frozen(bench, locks) if locks is not None else None
    bench_lock = LockRef(path=str(frozen[0].resolve()), frozen_at=frozen[1].frozen_at,
                         lock_digest=lock_file_digest(frozen[0])) if frozen else None
    run = RunRecord(bench_name=bench.name, bench_digest=bench.digest, bench_origin=bench.origin, bench_lock=bench_lock,
                    items=[item.model_dump(mode="json") for item in bench.items], target_spec=target_spec,
                    api_key_env=api_key_env, fingerprint=target.fingerprint.model_dump(mode="json"),
                    judge_name=judge.name, judge_version=judge.version, judge_target=judge_target,
                    judge_head=judge_head, limit=limit, concurrency=concurrency, use_cache=use_cache, out_dir="",
                    mutation=mutation, replay=replay, scripts=scripts, attacker=attacker, to_end=to_end,
                    hints=hints)
    if mutation is not None:
        check_plan(bench, mutation)
        earlier = [other for other in store.list_runs() if other.mutation is not None
                   and other.bench_digest == run.bench_digest and other.fingerprint == run.fingerprint]
        run = run.model_copy(update={"number": len(earlier) + 1})
    directory = (out_dir or out_root / run.run_id).resolve()
    run = run.model_copy(update={"out_dir": str(directory)})
    store.create_run(run)
    write_atomic(directory / RUN_POINTER, json.dumps({"run_id": run.run_id, "store": str(store.path.resolve())}))
    return run


def _attempts_in_receipt(path: Path) -> int | None:
    """The attempt count of a receipt on disk; None when there is none or it cannot be read."""
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["counts"]["attempts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_run(store: Store, reference: str) -> RunRecord:
    """A run by id, or by the output directory holding its run.json."""
    pointer = Path(reference) / RUN_POINTER
    if pointer.is_file():
        try:
            reference = json.loads(pointer.read_text(encoding="utf-8"))["run_id"]
            if not isinstance(reference, str):
                raise TypeError("run_id is not a string")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            raise InputFileError(f"not a refcal run pointer ({type(error).__name__}: {error})", path=str(pointer),
                                 field="run_id") from None
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
                      on_attempt: AttemptCallback | None = None, attacker: Attacker | None = None) -> Receipt:
    """Send what remains of `run` (targets already started), then write receipt and report — holding the run's
    lock, so that a second process resuming the same run stops before it sends anything."""
    with run_lock(Path(store.path), run.run_id):
        await run_drill_async(run, target, judge, store, on_attempt, attacker)
        try:
            return finish(store, run.run_id)
        except OSError as error:  # a full or read-only output folder: the run is not complete without its report
            marked = "marked interrupted"
            try:
                store.set_status(run.run_id, "interrupted")
            except Exception:
                marked = "could not be marked interrupted (its store is not writable either)"
            raise StoreError(f"could not write the receipt and report of run {run.run_id} in {run.out_dir} "
                             f"({error.strerror or error}); the run is {marked}: free space, then "
                             f"`refcal drill --resume {run.out_dir}`") from None


def finish(store: Store, run_id: str, force: bool = False) -> Receipt:
    """Write OUT/receipt.json and OUT/report.html from the store. A receipt already there that counts more
    attempts than the store now holds is never replaced without `force`: the store lost rows (damaged, or
    rolled back), and the older receipt is the better record."""
    run = store.get_run(run_id)
    attempts: list[Attempt] = list(store.attempts(run_id))
    out_dir = Path(run.out_dir)
    for stale in [*out_dir.glob(".receipt.json.*"), *out_dir.glob(".report.html.*")]:
        stale.unlink(missing_ok=True)  # a write killed half-way leaves its temporary file behind
    existing = _attempts_in_receipt(out_dir / "receipt.json")
    if existing is not None and existing > len(attempts) and not force:
        raise StoreError(f"{out_dir / 'receipt.json'} counts {existing} attempts but {store.path} holds only "
                         f"{len(attempts)} for run {run_id}: not replaced (the store may be damaged; --force "
                         "replaces it)")
    sample_path = None
    if has_review_sample(run):
        write_atomic(out_dir / REVIEW_SAMPLE, "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                                      for row in review_sample(attempts, run.run_id)))
        sample_path = REVIEW_SAMPLE
    measured = store.latest_agreement(run.judge_name, run.judge_version) \
        or shipped_agreement(run.judge_name, run.judge_version)
    receipt = build_receipt(run, attempts, measured, sample_path, store.labels([run_id]))
    write_receipt(receipt, out_dir)
    write_atomic(out_dir / "report.html", render_html(receipt, attempts))
    return receipt
