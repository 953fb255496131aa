"""Real-model throughput: a refcal drill on the embedded SmolLM2 against a raw client on the same server.

    python benchmarks/real_model.py [--slots 4] [--items 450] [--max-tokens 64] [--repeats 1]

Goal: refcal requests/s / raw requests/s >= 0.85, both measured in this run on one server.

One `LlamaCppTarget(slots=S)` (xllamacpp's llama.cpp server on 127.0.0.1, SmolLM2-135M-Instruct Q4_1)
is started once. On it, in the same run:

* raw: a minimal `httpx.AsyncClient` (pool of S) with S workers posting the `items` chats straight to
  `target.base_url + "/chat/completions"` (temperature 0, max_tokens M, the target's own payload);
* refcal: `run_drill_async` over a Bench of the same `items` prompts (the starter prompts repeated with
  the suffix " (variant k)", so every prompt is unique), concurrency S, MarkersJudge, Store in a temp
  dir, use_cache=False.

Both send the same requests in the same (drill) order, and completion tokens are summed for each pass so
a reader can check that both did the same work. Passes on this 2-core machine vary by 5-25 % from one to
the next (llama.cpp uses every core, so any other load skews them; `--threads 1` leaves a core to the
client), and the first pass on a fresh server was once 25 % slower than the rest (cold host-memory prompt
cache); so one untimed raw pass of the same requests goes first (`--no-warmup` to skip), and passes then
alternate across repeats (refcal, raw, raw, refcal, ...) with medians quoted. Client CPU (the event-loop
thread) and whole-process CPU (client plus llama.cpp's threads) are printed for each pass.

Defaults: 1 repeat (not 3) and max_tokens 64, so that a run takes about 10 minutes on 2 idle cores
(warm-up plus two timed passes of 3 to 3.5 minutes each). `--repeats 2` gives one balanced ABBA round in
about 17 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from refcal.bench import load_bench
from refcal.bench.items import Bench, Item
from refcal.bench.loaders import finish_bench
from refcal.drills.plan import plan_variants
from refcal.judges.markers import MarkersJudge
from refcal.records import Message
from refcal.run.runner import run_drill_async
from refcal.run.session import new_run
from refcal.store.runs import Store
from refcal.targets.base import GenerationParams
from refcal.targets.llamacpp import CONTEXT_PER_SLOT, LlamaCppTarget

GOAL = 0.85


@dataclass
class Sample:
    """One timed pass over every item."""

    requests: int
    errors: int
    completion_tokens: int
    wall_s: float
    client_cpu_s: float = 0.0
    """CPU of the event-loop thread (the client); llama.cpp's threads are not in it."""
    process_cpu_s: float = 0.0
    """CPU of the whole process: the client plus llama.cpp's threads."""

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s


class Clock:
    """Wall time, client-thread CPU and whole-process CPU since creation."""

    def __init__(self) -> None:
        self.start = (time.perf_counter(), time.thread_time(), time.process_time())

    def read(self) -> tuple[float, float, float]:
        now = (time.perf_counter(), time.thread_time(), time.process_time())
        return now[0] - self.start[0], now[1] - self.start[1], now[2] - self.start[2]


def variant_bench(count: int) -> Bench:
    """`count` unique items: the starter items over and over, prompt suffixed " (variant k)" on round k."""
    starter = load_bench("starter").items
    ids = {f"{starter[index % len(starter)].id}-v{index // len(starter)}" for index in range(count)}
    items: list[Item] = []
    for index in range(count):
        base, round_ = starter[index % len(starter)], index // len(starter)
        last = base.messages[-1]
        messages = (*base.messages[:-1], Message(role=last.role, content=f"{last.content} (variant {round_})"))
        twin = f"{base.pair}-v{round_}"
        items.append(Item(id=f"{base.id}-v{round_}", messages=messages, expect=base.expect, klass=base.klass,
                          pair=twin if twin in ids else None, tags=base.tags, source=base.source))
    return finish_bench(items, f"starter-variants-{count}", None)


async def raw_pass(target: LlamaCppTarget, payloads: list[dict[str, Any]], slots: int) -> Sample:
    limits = httpx.Limits(max_connections=slots, max_keepalive_connections=slots)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        url = target.base_url + "/chat/completions"
        queue = iter(payloads)
        done = errors = tokens = 0

        async def worker() -> None:
            nonlocal done, errors, tokens
            for payload in queue:
                response = await client.post(url, json=payload)
                done += 1
                if response.status_code != 200:
                    errors += 1
                    continue
                body = response.json()
                if not isinstance(body["choices"][0]["message"]["content"], str):
                    errors += 1
                tokens += (body.get("usage") or {}).get("completion_tokens") or 0

        clock = Clock()
        await asyncio.gather(*(worker() for _ in range(slots)))
        return Sample(done, errors, tokens, *clock.read())


async def refcal_pass(target: LlamaCppTarget, bench: Bench, slots: int, workdir: Path) -> Sample:
    judge = MarkersJudge()
    with Store(workdir / "runs.db") as store:
        run = new_run(store, bench, target, judge, target_spec=target.description, out_root=workdir / "out",
                      concurrency=slots, use_cache=False)
        clock = Clock()
        await run_drill_async(run, target, judge, store)
        times = clock.read()
        attempts = list(store.attempts(run.run_id))
    return Sample(len(attempts), sum(attempt.is_error for attempt in attempts),
                  sum(attempt.completion_tokens or 0 for attempt in attempts), *times)


def show(label: str, sample: Sample) -> None:
    flag = f"  ERRORS={sample.errors}" if sample.errors else ""
    print(f"  {label:<6} {sample.requests} req in {sample.wall_s:7.1f} s = {sample.throughput:6.3f} req/s, "
          f"{sample.completion_tokens} completion tokens = {sample.tokens_per_s:6.1f} tok/s; CPU: client "
          f"{sample.client_cpu_s / sample.requests * 1e3:5.2f} ms/req, whole process {sample.process_cpu_s:6.1f} s"
          f"{flag}", flush=True)


async def measure(args: argparse.Namespace) -> None:
    bench = variant_bench(args.items)
    params = GenerationParams(temperature=0.0, max_tokens=args.max_tokens)
    target = LlamaCppTarget("smollm2", params=params, slots=args.slots, threads=args.threads)
    print(f"real_model: model={target.model_path.name} slots={args.slots} threads={target.threads} "
          f"n_ctx={CONTEXT_PER_SLOT * args.slots} items={args.items} max_tokens={args.max_tokens} temperature=0 "
          f"repeats={args.repeats}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("WARNING: the machine is already busy (load average above half the CPUs): figures will be skewed")
    started = time.perf_counter()
    async with target:
        print(f"server up at {target.base_url} in {time.perf_counter() - started:.1f} s", flush=True)
        payloads = [{"model": target.model, "messages": [message.model_dump() for message in variant.messages],
                     "temperature": params.temperature, "max_tokens": params.max_tokens}
                    for variant in plan_variants(bench)]  # what OpenAITarget sends, in drill order
        if not args.no_warmup:
            warm = await raw_pass(target, payloads, args.slots)
            print(f"warm-up: one untimed raw pass of all {warm.requests} requests in {warm.wall_s:.1f} s, so no "
                  "timed pass pays for llama.cpp's cold prompt cache", flush=True)
        raw: list[Sample] = []
        ours: list[Sample] = []
        with tempfile.TemporaryDirectory(prefix="refcal-bench-") as tmp:
            for repeat in range(args.repeats):
                print(f"repeat {repeat + 1}/{args.repeats}:", flush=True)
                order = ("refcal", "raw") if repeat % 2 == 0 else ("raw", "refcal")
                for label in order:
                    if label == "raw":
                        raw.append(sample := await raw_pass(target, payloads, args.slots))
                    else:
                        workdir = Path(tmp) / f"r{repeat}"
                        ours.append(sample := await refcal_pass(target, bench, args.slots, workdir))
                    show(label, sample)

    raw_rps = statistics.median(sample.throughput for sample in raw)
    our_rps = statistics.median(sample.throughput for sample in ours)
    print(f"\nmedians over {args.repeats} repeat(s):")
    print(f"  raw    {raw_rps:6.3f} req/s  {statistics.median(s.tokens_per_s for s in raw):6.1f} completion tok/s")
    print(f"  refcal {our_rps:6.3f} req/s  {statistics.median(s.tokens_per_s for s in ours):6.1f} completion tok/s")
    print("  per-repeat ratios: " + ", ".join(f"{o.throughput / r.throughput:.3f}" for r, o in zip(raw, ours,
                                                                                                   strict=True)))
    ratio = our_rps / raw_rps
    print(f"RATIO refcal / raw = {ratio:.3f} ({'meets' if ratio >= GOAL else 'MISSES'} the {GOAL} goal)")
    print(f"total wall time {time.perf_counter() - started:.1f} s (max_tokens={args.max_tokens}); "
          f"load average {os.getloadavg()[0]:.2f} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=4, help="server slots = concurrency of both clients (default 4)")
    parser.add_argument("--items", type=int, default=450, help="requests per pass (default 450)")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request (default 64)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed repeats of each pass (default 1, to keep a run near 7 minutes; 2 gives ABBA)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all CPUs)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
