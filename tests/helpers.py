"""Small builders shared by tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from refcal.bench.items import Bench, Item
from refcal.bench.loaders import finish_bench
from refcal.judges import MarkersJudge
from refcal.receipts import Receipt
from refcal.run.session import drill_async, new_run
from refcal.store.runs import Store
from refcal.targets import OpenAITarget, RetryPolicy

FAST_RETRY = RetryPolicy(max_tries=4, base_delay_s=0.01, max_delay_s=0.05)
REFCAL_TIMEOUT_S = 900
"""The longest a `refcal` subprocess may run in a test (a fast drill on the embedded model is the slowest)."""


def refcal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m refcal.cli ARGS…` and capture its output as text."""
    return subprocess.run([sys.executable, "-m", "refcal.cli", *args], capture_output=True, text=True, env=env,
                          timeout=REFCAL_TIMEOUT_S)


def refcal_process(*args: str) -> subprocess.Popen:
    """Start `python -m refcal.cli ARGS…` in the background, stdout and stderr together as text."""
    return subprocess.Popen([sys.executable, "-m", "refcal.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def make_bench(count: int, name: str = "synthetic") -> Bench:
    items = [Item.model_validate({"id": f"i{index:04d}", "prompt": f"Question number {index}?",
                                  "expect": "refuse" if index % 2 else "comply", "klass": f"c{index % 3}"})
             for index in range(count)]
    return finish_bench(items, name, None)


def stub_target(base_url: str, **options) -> OpenAITarget:
    options.setdefault("retry", FAST_RETRY)
    return OpenAITarget("stub", base_url, **options)


def drill(bench: Bench, target: OpenAITarget, store_path: Path, concurrency: int = 4,
          use_cache: bool = False) -> tuple[Receipt, Store]:
    store = Store(store_path)

    async def go() -> Receipt:
        async with target:
            run = new_run(store, bench, target, MarkersJudge(), target_spec=target.description,
                          out_root=store_path.parent / "runs", concurrency=concurrency, use_cache=use_cache)
            return await drill_async(run, target, MarkersJudge(), store)

    return asyncio.run(go()), store


def judged_attempt(variant_id: str, prompt: str, response: str, label: str, *, expect: str = "refuse",
                   lane: str = "markers", score: float = 0.9, klass: str = "k", script: str | None = None,
                   turn: int | None = None, move: str | None = None):
    """An attempt with a verdict, built by hand (no target): for tests of what happens after judging."""
    from refcal.records import Attempt, Message, Variant, Verdict

    variant = Variant(id=variant_id, item_id=variant_id.split("~")[0], messages=(Message(role="user", content=prompt),),
                      expect=expect, klass=klass, script=script, turn=turn, move=move)
    return Attempt(variant=variant, response=response, verdict=Verdict(label=label, score=score, lane=lane),
                   finished_at="2026-11-26T00:00:00.000+00:00")


def stored_run(store: Store, attempts, out_dir: Path, run_id: str = "run-a") -> str:
    """A run record holding hand-built attempts (its bench: their items)."""
    from refcal.records import RunRecord

    items = {attempt.variant.item_id: {"id": attempt.variant.item_id, "prompt": attempt.variant.prompt,
                                       "expect": attempt.variant.expect, "klass": attempt.variant.klass}
             for attempt in attempts}
    bench = finish_bench([Item.model_validate(item) for item in items.values()], "hand", None)
    store.create_run(RunRecord(run_id=run_id, bench_name=bench.name, bench_digest=bench.digest,
                               items=[item.model_dump(mode="json") for item in bench.items], target_spec="stub",
                               fingerprint={"kind": "stub"}, judge_name="cascade", judge_version="test",
                               concurrency=1, out_dir=str(out_dir), status="complete"))
    for attempt in attempts:
        store.record(run_id, attempt)
    return run_id


def drill_with_locks(bench: Bench, locks: Path, store_path: Path, answer=None) -> Receipt:
    """A drill against a stub server (no model needed): `answer(prompt) -> text`, by default a refusal."""
    from refcal.testing import Reply, StubServer

    answer = answer or (lambda prompt: "I can't help with that.")
    with StubServer(lambda request, number: Reply(text=answer(request["messages"][-1]["content"]))) as stub:
        target = stub_target(stub.base_url)
        store = Store(store_path)

        async def go() -> Receipt:
            async with target:
                run = new_run(store, bench, target, MarkersJudge(), target_spec=target.description,
                              out_root=store_path.parent / "runs", concurrency=2, use_cache=False, locks=locks)
                return await drill_async(run, target, MarkersJudge(), store)

        return asyncio.run(go())
