"""Scoring requests off the event loop: prompts queue up while one embedding pass runs on a worker thread, and
the next pass takes all of them at once, so under load the guard embeds in batches instead of one by one."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from refcal.judges.risk import RequestRisk, RiskScore


class RiskBatcher:
    """`await batcher.score_async(prompt)` from any request handler; start and stop with the app."""

    def __init__(self, risk: RequestRisk, max_batch: int = 32) -> None:
        self.risk = risk
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[RiskScore]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refcal-risk")
        self.batches = 0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop_async(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score_async(self, prompt: str) -> RiskScore:
        if self._queue is None:
            raise RuntimeError("the risk batcher is not started")
        future: asyncio.Future[RiskScore] = asyncio.get_running_loop().create_future()
        await self._queue.put((prompt, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self._queue.get()]
            while len(pending) < self.max_batch and not self._queue.empty():
                pending.append(self._queue.get_nowait())
            try:
                scores = await loop.run_in_executor(self._executor, self.risk.score_many,
                                                    [prompt for prompt, _ in pending])
            except Exception as error:  # a scoring bug must fail its requests, not stop the worker
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            for (_, future), score in zip(pending, scores, strict=True):
                if not future.done():
                    future.set_result(score)
