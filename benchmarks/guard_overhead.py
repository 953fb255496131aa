"""Guard overhead: what `refcal guard` adds to each request, p50 and p99, in front of a fixed-latency server.

    python benchmarks/guard_overhead.py [--requests 300] [--latency 0.02] [--concurrency 1] [--repeats 3]
                                        [--mode flag|gate] [--no-log] [--torch-threads 1]

A loopback `refcal.testing.StubServer(fixed_latency(latency))` answers every chat after `latency` seconds
(20 ms by default). The same `requests` chat requests (the starter bench's prompts, cycled, so the risk
scorer embeds real text of real lengths) are sent to it directly and through the guard (flag mode by default) with
scoring on and the exchange log written (redacted) to a temporary file, from `concurrency` client tasks on
one `httpx.AsyncClient`. The stub and the guard each run in a child process, as they would in production,
so neither shares the client's GIL. Passes alternate (direct, guard, direct, guard, ...) after a warm-up of
each; per pass the p50 and p99 of the per-request latency are taken, and the medians over `repeats` are
printed with the overhead (guard − direct) and the ratio (guard / direct).

In flag mode the guard scores while the upstream answers (the score only feeds the header and the log); with
`--mode gate` it must score before it routes, so the scoring time adds up. The gate pass points the gate
upstream at the same stub, so every request still costs one stub call whichever way it is routed.

The baseline is the direct pass in the same run. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

UNSET_KEY_ENV = "REFCAL_BENCH_NO_SUCH_KEY"
"""Never set, so no API key is read or sent."""
WARM_UP = 30


def _serve_stub(latency: float, pipe: Connection) -> None:
    from refcal.testing import StubServer, fixed_latency

    with StubServer(fixed_latency(latency)) as stub:
        pipe.send(stub.port)
        pipe.recv()  # any message stops it


def _serve_guard(upstream: str, port: int, log: str | None, torch_threads: int, mode: str) -> None:
    os.environ["OMP_NUM_THREADS"] = str(torch_threads)
    import torch
    import uvicorn

    from refcal.guard import GuardSettings, make_app
    from refcal.judges.risk import RequestRisk

    torch.set_num_threads(torch_threads)
    settings = GuardSettings(upstream=upstream, mode=mode, gate_upstream=upstream if mode == "gate" else None,
                             log=Path(log) if log else None, api_key_env=UNSET_KEY_ENV)
    uvicorn.run(make_app(settings, RequestRisk.default()), host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def stub_process(latency: float) -> Iterator[str]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_stub, args=(latency, child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the stub process did not start")
        yield f"http://127.0.0.1:{parent.recv()}/v1"
    finally:
        parent.send("stop")
        process.join(10)


@contextmanager
def guard_process(upstream: str, log: str | None, torch_threads: int, mode: str) -> Iterator[str]:
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_serve_guard, args=(upstream, port, log, torch_threads, mode), daemon=True)
    process.start()
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300  # the guard embeds the benches before it listens
        while True:
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the guard process did not start")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.join(10)


def prompts(count: int) -> list[str]:
    from refcal.bench import load_bench

    texts = [item.prompt for item in load_bench("starter").items]
    return [texts[index % len(texts)] for index in range(count)]


async def timed_pass(url: str, texts: list[str], concurrency: int) -> list[float]:
    """Per-request latencies (ms) of `texts` sent from `concurrency` tasks; any non-200 stops the run."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                text = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post("/chat/completions", json={
                    "model": "stub", "messages": [{"role": "user", "content": text}], "max_tokens": 16})
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.02, help="stub latency, seconds")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=("flag", "gate"), default="flag", help="the guard's mode")
    parser.add_argument("--no-log", action="store_true", help="run the guard without its exchange log")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads in the guard process")
    options = parser.parse_args()

    started = time.perf_counter()
    print(f"guard overhead: {options.requests} requests × {options.repeats} repeats, concurrency "
          f"{options.concurrency}, {options.mode} mode, stub latency {options.latency * 1000:g} ms, log "
          f"{'off' if options.no_log else 'on (redacted)'}, torch threads {options.torch_threads}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("WARNING: the machine is already busy (load average above half the CPUs): figures will be skewed")
    texts = prompts(options.requests)
    results: dict[str, list[tuple[float, float]]] = {"direct": [], "guard": []}
    with tempfile.TemporaryDirectory() as folder, stub_process(options.latency) as stub:
        log = None if options.no_log else str(Path(folder) / "guard.jsonl")
        with guard_process(stub, log, options.torch_threads, options.mode) as guarded:
            urls = {"direct": stub, "guard": guarded}
            for url in urls.values():
                asyncio.run(timed_pass(url, prompts(WARM_UP), options.concurrency))
            for repeat in range(options.repeats):
                for name in ("direct", "guard") if repeat % 2 == 0 else ("guard", "direct"):
                    latencies = asyncio.run(timed_pass(urls[name], texts, options.concurrency))
                    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
                    results[name].append((p50, p99))
                    print(f"  repeat {repeat + 1} {name:>6}: p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
        if log:
            lines = Path(log).read_text(encoding="utf-8").count("\n")
            print(f"  the guard logged {lines} exchanges")

    medians = {name: (statistics.median(p50 for p50, _ in rows), statistics.median(p99 for _, p99 in rows))
               for name, rows in results.items()}
    print(f"{'pass':>8} {'p50 ms':>9} {'p99 ms':>9}")
    for name, (p50, p99) in medians.items():
        print(f"{name:>8} {p50:9.2f} {p99:9.2f}")
    (direct_p50, direct_p99), (guard_p50, guard_p99) = medians["direct"], medians["guard"]
    print(f"overhead: p50 +{guard_p50 - direct_p50:.2f} ms (ratio {guard_p50 / direct_p50:.3f}), "
          f"p99 +{guard_p99 - direct_p99:.2f} ms (ratio {guard_p99 / direct_p99:.3f})")
    print(f"wall time {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
