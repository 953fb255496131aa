"""Guard under large requests: its memory over waves of 200 concurrent large bodies, and how long a small
request waits while a wave is in flight.

    python benchmarks/guard_memory.py [--concurrency 200] [--size 1000000] [--waves 3]

The guard (flag mode, exchange log redacted to a temporary file) runs in a child process in front of a
loopback stub (`refcal.testing.StubServer`, 20 ms); its resident memory (VmRSS of the child) is read after
start-up and after each wave. During each wave a 2-byte request is sent and timed; the baseline is the
same small request on the idle guard in the same run. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from guard_overhead import _free_port, _serve_guard, stub_process


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def body(text: str) -> dict:
    return {"model": "stub", "messages": [{"role": "user", "content": text}], "max_tokens": 16}


async def small_latency(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    response = await client.post("/chat/completions", json=body("hi"))
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


async def wave(url: str, concurrency: int, size: int) -> tuple[list[int], float]:
    limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        text = "lorem ipsum dolor sit amet " * (size // 27)
        large = [asyncio.create_task(client.post("/chat/completions", json=body(text))) for _ in range(concurrency)]
        await asyncio.sleep(0.2)  # the wave is in flight
        small = await small_latency(client)
        statuses = [response.status_code for response in await asyncio.gather(*large)]
    return statuses, small


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--size", type=int, default=1_000_000, help="characters per large request")
    parser.add_argument("--waves", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.waves} waves of {args.concurrency} × {args.size:,} chars")
    with tempfile.TemporaryDirectory() as folder, stub_process(0.02) as upstream:
        port = _free_port()
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=_serve_guard, args=(upstream, port, str(Path(folder) / "log.jsonl"), 1,
                                                             "flag"), daemon=True)
        process.start()
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 300
            while True:
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the guard did not start")
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)

            async def idle() -> list[float]:
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    return [await small_latency(client) for _ in range(10)]
            baseline = statistics.median(asyncio.run(idle()))
            print(f"after start-up: guard RSS {rss_mib(process.pid):.0f} MiB; small request alone "
                  f"{baseline:.1f} ms (median of 10)")
            for number in range(1, args.waves + 1):
                started = time.perf_counter()
                statuses, small = asyncio.run(wave(url, args.concurrency, args.size))
                print(f"wave {number}: {statuses.count(200)}/{len(statuses)} answered in "
                      f"{time.perf_counter() - started:.1f} s; small request during it {small:.0f} ms "
                      f"({small / baseline:.0f}× alone); guard RSS after {rss_mib(process.pid):.0f} MiB")
        finally:
            process.terminate()
            process.join(10)


if __name__ == "__main__":
    main()
