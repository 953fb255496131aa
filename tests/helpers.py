"""Small builders shared by tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from refcal.bench.items import Bench, Item
from refcal.bench.loaders import finish_bench
from refcal.drills.session import drill_async, new_run
from refcal.judges import MarkersJudge
from refcal.receipts import Receipt
from refcal.store import Store
from refcal.targets import OpenAITarget, RetryPolicy

FAST_RETRY = RetryPolicy(max_tries=4, base_delay_s=0.01, max_delay_s=0.05)


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
