"""Harness overhead: how close a full refcal drill gets to the throughput a fixed-latency server allows.

    python benchmarks/harness_overhead.py [--items 2000] [--concurrency 64] [--latency 0.1] [--repeats 3]
                                          [--stub-thread] [--no-httpx2] [--profile]

Goal: refcal throughput / (concurrency / latency) >= 0.95.

A loopback `refcal.testing.StubServer(fixed_latency(latency))` answers every chat after `latency`
seconds, so `concurrency` in-flight requests can at best complete `concurrency / latency` requests/s
(640/s by default). The script drills a synthetic bench of `items` unique prompts (half `refuse`, half
`comply`, in matched pairs) through the real runner (`run_drill_async`: OpenAITarget → MarkersJudge →
Store in a temp dir, use_cache=False) and, in the same run and against the same stub, baselines at the same
concurrency:

* `raw httpx`: a minimal `httpx.AsyncClient` loop, one pool of `concurrency` connections;
* `raw httpx/8`: the same loop over 8 AsyncClients, i.e. pools of 8 connections at concurrency 64, the
  layout of refcal's own transport (`refcal.targets.transport.ShardedTransport`): httpcore 1.0.9's pool
  does work quadratic in its connections on every request, ~10 ms of CPU per request at 64;
* `raw asyncio`: hand-written HTTP/1.1 over asyncio streams, no HTTP library: the stub/loopback limit.

When `httpx2` is importable (a fork of httpx with a linear pool; the hf extra brings it), two diagnosis
passes follow: `raw httpx2`, and `refcal+httpx2`, the same drill with OpenAITarget's AsyncClient swapped
for an httpx2 one by a subclass defined here (src/ is untouched). Passes alternate in order across
repeats; medians are quoted. Client CPU is the event-loop thread's, process CPU adds refcal's store
writer thread; stub CPU is the stub's own.

By default the stub runs in a child process (still `StubServer`, still 127.0.0.1) so that it does not
share the client's GIL; `--stub-thread` runs it in a thread of this process, as tests do. `--profile`
adds one cProfile'd refcal drill (client thread only) and prints where its CPU goes, grouped by library.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import logging
import math
import multiprocessing
import os
import pstats
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import httpx

from refcal.bench.items import Bench, Item
from refcal.bench.loaders import finish_bench
from refcal.judges.markers import MarkersJudge
from refcal.records import Message
from refcal.run.runner import run_drill_async
from refcal.run.session import finish, new_run
from refcal.store.runs import Store
from refcal.targets.openai import OpenAITarget
from refcal.testing import StubServer, fixed_latency

UNSET_KEY_ENV = "REFCAL_BENCH_NO_SUCH_KEY"
"""An environment variable that is never set, so no API key is ever read or sent."""
CLASSES = 10
GOAL = 0.95
SHARDS = 8
"""`raw httpx/8` spreads its `concurrency` connections over this many AsyncClients (pools of 8 at 64)."""


@dataclass
class Sample:
    """One timed pass."""

    requests: int
    errors: int
    wall_s: float
    cpu_s: float
    """CPU time of the client (event-loop) thread only."""
    stub_cpu_s: float = 0.0
    process_cpu_s: float = 0.0
    """CPU time of this whole process: the client thread plus refcal's store writer thread (and the stub with
    --stub-thread)."""
    finish_s: float = 0.0
    """refcal only: receipt + report written after the drill (not part of the throughput)."""

    @property
    def throughput(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.requests * 1e6

    @property
    def process_cpu_us(self) -> float:
        return self.process_cpu_s / self.requests * 1e6

    @property
    def stub_cpu_us(self) -> float:
        return self.stub_cpu_s / self.requests * 1e6


# --- the stub, in a child process or in a thread -------------------------------------------------------


def _serve_stub(latency: float, pipe: Connection) -> None:
    """Child process: serve until the parent says "stop"; answer "cpu" with this process's CPU seconds."""
    with StubServer(fixed_latency(latency)) as stub:
        pipe.send(stub.port)
        while (message := pipe.recv()) != "stop":
            assert message == "cpu"
            pipe.send(time.process_time())
        _quiet_asyncio()


class Stub:
    """A running stub: its base URL and a reading of the CPU it has used so far."""

    def __init__(self, base_url: str, cpu: Callable[[], float]) -> None:
        self.base_url = base_url
        self.cpu = cpu


class Meter:
    """Wall time, client-thread CPU, process CPU and stub CPU from creation to `read()`."""

    def __init__(self, stub: Stub) -> None:
        self.stub = stub
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        return time.perf_counter(), time.thread_time(), time.process_time(), self.stub.cpu()

    def read(self) -> tuple[float, float, float, float]:
        """(wall, client CPU, stub CPU, process CPU) in seconds."""
        wall, cpu, process, stub = (now - then for now, then in zip(self._now(), self.start, strict=True))
        return wall, cpu, stub, process


def _quiet_asyncio() -> None:
    """StubServer stops its loop with keep-alive connection tasks pending; asyncio would log each one."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def _thread_cpu(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextmanager
def running_stub(latency: float, in_thread: bool) -> Iterator[Stub]:
    if in_thread:
        with StubServer(fixed_latency(latency)) as server:
            native_id = server._thread.native_id
            assert native_id is not None
            yield Stub(server.base_url, lambda: _thread_cpu(native_id))
            _quiet_asyncio()
        return
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_stub, args=(latency, child), daemon=True)
    process.start()
    lock = threading.Lock()

    def cpu() -> float:
        with lock:
            parent.send("cpu")
            return float(parent.recv())

    try:
        if not parent.poll(60):
            raise RuntimeError("the stub process did not start")
        yield Stub(f"http://127.0.0.1:{parent.recv()}/v1", cpu)
    finally:
        if process.is_alive():
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join()


# --- the bench and the passes ---------------------------------------------------------------------------


def synthetic_bench(count: int) -> Bench:
    """`count` unique items in matched pairs over CLASSES classes: even ids refuse, odd ids comply."""
    items = []
    for index in range(count):
        twin = index + 1 if index % 2 == 0 else index - 1
        prompt = f"Synthetic request number {index}: please explain how to do thing {index} in a few sentences."
        items.append(Item(id=f"syn-{index:06d}", messages=(Message(role="user", content=prompt),),
                          expect="refuse" if index % 2 == 0 else "comply",
                          klass=f"class-{(index // 2) % CLASSES}",
                          pair=f"syn-{twin:06d}" if twin < count else None, tags=("synthetic",),
                          source="benchmarks/harness_overhead.py"))
    return finish_bench(items, "synthetic", None)


class Httpx2Target(OpenAITarget):
    """Diagnosis only: OpenAITarget with its AsyncClient built from httpx2 (same API, linear pool)."""

    async def start_async(self) -> None:
        http = importlib.import_module("httpx2")
        limits = http.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        client = http.AsyncClient(base_url=self.base_url, headers={"Content-Type": "application/json"},
                                  limits=limits, timeout=http.Timeout(self.timeout_s, connect=10.0))
        self._client = cast(httpx.AsyncClient, client)
        await self._check_reachable_async()


async def refcal_pass(stub: Stub, bench: Bench, concurrency: int, workdir: Path, httpx2: bool = False) -> Sample:
    """One full drill through the real runner; only `run_drill_async` is timed.

    `httpx2`: OpenAITarget's AsyncClient swapped for an httpx2 one (diagnosis); otherwise as shipped.
    """
    kind = Httpx2Target if httpx2 else OpenAITarget
    target = kind("stub", stub.base_url, api_key_env=UNSET_KEY_ENV, concurrency=concurrency)
    judge = MarkersJudge()
    with Store(workdir / "runs.db") as store:
        async with target:  # start (GET /models, client set-up) is not timed
            run = new_run(store, bench, target, judge, target_spec=target.description, out_root=workdir / "out",
                          concurrency=concurrency, use_cache=False)
            meter = Meter(stub)
            await run_drill_async(run, target, judge, store)
            wall, cpu, stub_cpu, process_cpu = meter.read()
        finish_started = time.perf_counter()
        finish(store, run.run_id)
        finish_s = time.perf_counter() - finish_started
        attempts = list(store.attempts(run.run_id))
    errors = sum(attempt.is_error for attempt in attempts)
    return Sample(len(attempts), errors, wall, cpu, stub_cpu, process_cpu, finish_s)


async def raw_pass(stub: Stub, bench: Bench, concurrency: int, http: ModuleType = httpx, shards: int = 1) -> Sample:
    """The least a client can do: post the same chats with the same pool size and read the reply text.

    `shards` > 1 splits the pool over that many AsyncClients (workers round-robin over them).
    """
    per_client = math.ceil(concurrency / shards)
    limits = http.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(http.AsyncClient(
            base_url=stub.base_url, limits=limits, headers={"Content-Type": "application/json"},
            timeout=http.Timeout(120.0, connect=10.0))) for _ in range(shards)]
        for client in clients:
            await client.get("/models")  # as OpenAITarget.start_async does, untimed
        payloads = iter([{"model": "stub", "messages": [{"role": "user", "content": item.prompt}],
                          "temperature": 0.0, "max_tokens": 256} for item in bench.items])
        done = errors = 0

        async def worker(client: Any) -> None:
            nonlocal done, errors
            for payload in payloads:
                response = await client.post("/chat/completions", json=payload)
                if response.status_code != 200 or not isinstance(
                        response.json()["choices"][0]["message"]["content"], str):
                    errors += 1
                done += 1

        meter = Meter(stub)
        await asyncio.gather(*(worker(clients[index % shards]) for index in range(concurrency)))
        return Sample(done, errors, *meter.read())


async def asyncio_pass(stub: Stub, bench: Bench, concurrency: int) -> Sample:
    """The stub/loopback limit: hand-written HTTP/1.1 keep-alive over asyncio streams, no HTTP library."""
    host, port = stub.base_url.removeprefix("http://").split("/")[0].split(":")
    bodies = iter([json.dumps({"model": "stub", "messages": [{"role": "user", "content": item.prompt}],
                               "temperature": 0.0, "max_tokens": 256}).encode() for item in bench.items])
    done = errors = 0

    async def worker() -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        for body in bodies:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            reply = json.loads(await reader.readexactly(length))
            errors += not head.startswith("http/1.1 200") or not isinstance(
                reply["choices"][0]["message"]["content"], str)
            done += 1
        writer.close()
        await writer.wait_closed()

    meter = Meter(stub)
    await asyncio.gather(*(worker() for _ in range(concurrency)))  # connecting is timed: ~1 ms in all
    return Sample(done, errors, *meter.read())


# --- profile --------------------------------------------------------------------------------------------


def profile_refcal(stub: Stub, bench: Bench, concurrency: int, top: int) -> None:
    """One drill under cProfile (client thread), summarised by library, then the top functions."""
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="refcal-bench-") as tmp:
        profiler.enable()
        sample = asyncio.run(refcal_pass(stub, bench, concurrency, Path(tmp)))
        profiler.disable()
    stats = pstats.Stats(profiler)
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values())
    buckets: dict[str, float] = {}
    for (filename, _, function), entry in entries.items():
        name = _bucket(filename, function)
        buckets[name] = buckets.get(name, 0.0) + entry[2]
    print(f"\nprofile of one refcal drill (cProfile, client thread; {sample.requests} requests at "
          f"{sample.throughput:.0f} req/s under the profiler): own time by library, {total:.2f} s in all = "
          f"{total / sample.requests * 1e6:.0f} µs/request")
    for name, seconds in sorted(buckets.items(), key=lambda pair: -pair[1]):
        if seconds / total >= 0.005:
            per_request = seconds / sample.requests * 1e6
            print(f"  {name:<30} {seconds:7.3f} s  {seconds / total:6.1%}  {per_request:7.1f} µs/req")
    print(f"\ntop {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


_BUCKETS = (
    ("httpcore/_async/connection_pool", "httpcore connection pool"),
    ("httpcore/_async/connection.py", "httpcore connection pool"),
    ("httpcore/_async/http11", "httpcore http11"),
    ("httpcore2/_async/connection_pool", "httpcore2 connection pool"),
    ("httpcore2/_async/connection.py", "httpcore2 connection pool"),
    ("httpcore2/_async/http11", "httpcore2 http11"),
    ("httpcore", "httpcore (other)"),
    ("anyio", "anyio"),
    ("refcal/store", "refcal.store.runs"),
    ("refcal/judges", "refcal.judges"),
    ("refcal/drills", "refcal.drills"),
    ("refcal/targets", "refcal.targets"),
    ("refcal/", "refcal (other)"),
    ("pydantic", "pydantic"),
    ("httpx", "httpx"),
    ("h11", "h11"),
    ("asyncio", "asyncio"),
    ("selectors", "asyncio"),
    ("socket.py", "socket"),
    ("enum.py", "enum"),
    ("json", "json"),
    ("/re/", "re"),
)


def _bucket(filename: str, function: str) -> str:
    if filename == "~":  # C functions
        for marker, name in (("sqlite3", "sqlite3 (C)"), ("getpeername", "socket / poll (C)"),
                             ("poll", "socket / poll (C)"), ("socket", "socket / poll (C)"),
                             ("pydantic", "pydantic (C)"), ("json", "json"), ("re.Pattern", "re")):
            if marker in function:
                return name
        return "other builtins (C)"
    for marker, name in _BUCKETS:
        if marker in filename:
            return name
    return "other python"


# --- main -----------------------------------------------------------------------------------------------


Pass = Callable[[], Coroutine[Any, Any, Sample]]


def timed(label: str, make: Pass) -> Sample:
    sample = asyncio.run(make())
    flag = f"  ERRORS={sample.errors}" if sample.errors else ""
    extra = f"; receipt+report after it {sample.finish_s:.2f} s (untimed)" if sample.finish_s else ""
    print(f"  {label:<15} {sample.requests} req in {sample.wall_s:6.3f} s = {sample.throughput:6.1f} req/s; "
          f"CPU/req client {sample.cpu_us:5.0f} µs, process {sample.process_cpu_us:5.0f} µs, "
          f"stub {sample.stub_cpu_us:4.0f} µs{flag}{extra}")
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000, help="variants per drill (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64, help="in-flight requests (default 64)")
    parser.add_argument("--latency", type=float, default=0.100, help="stub latency in seconds (default 0.1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each pass (default 3)")
    parser.add_argument("--warmup", type=int, default=256, help="untimed items per pass before timing (0: none)")
    parser.add_argument("--stub-thread", action="store_true", help="run the stub in a thread of this process")
    parser.add_argument("--no-httpx2", action="store_true", help="skip the httpx2 diagnosis passes")
    parser.add_argument("--profile", action="store_true", help="also profile one refcal drill with cProfile")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile (default 25)")
    args = parser.parse_args()

    httpx2: ModuleType | None = None
    if not args.no_httpx2:
        try:
            httpx2 = importlib.import_module("httpx2")
        except ImportError:
            print("httpx2 is not installed: its diagnosis passes are skipped")
    bound = args.concurrency / args.latency
    ceiling = args.items / (math.ceil(args.items / args.concurrency) * args.concurrency)
    bench = synthetic_bench(args.items)
    where = "a thread of this process" if args.stub_thread else "a child process"
    print(f"harness_overhead: items={args.items} concurrency={args.concurrency} latency={args.latency * 1000:g} ms "
          f"repeats={args.repeats} warmup={args.warmup}; stub on 127.0.0.1 in {where}; judge=markers; "
          f"store=SQLite WAL in a temp dir; use_cache=False; httpx {httpx.__version__}"
          + (f", httpx2 {httpx2.__version__}" if httpx2 else ""))
    print(f"bound = concurrency / latency = {bound:.0f} req/s (a perfect client still idles through the last "
          f"partial wave: ratio ceiling {ceiling:.3f}); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start")
    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("WARNING: the machine is already busy (load average above half the CPUs): figures will be skewed")
    started = time.perf_counter()
    results: dict[str, list[Sample]] = {}
    with running_stub(args.latency, args.stub_thread) as stub, \
            tempfile.TemporaryDirectory(prefix="refcal-bench-") as tmp:
        def passes(drill: Bench, repeat: int) -> list[tuple[str, Pass]]:
            workdir = Path(tmp) / f"r{repeat}"
            chosen: list[tuple[str, Pass]] = [
                ("raw asyncio", lambda: asyncio_pass(stub, drill, args.concurrency)),
                ("raw httpx", lambda: raw_pass(stub, drill, args.concurrency)),
                ("refcal", lambda: refcal_pass(stub, drill, args.concurrency, workdir / "refcal")),
                (f"raw httpx/{SHARDS}", lambda: raw_pass(stub, drill, args.concurrency, shards=SHARDS)),
            ]
            if httpx2 is not None:
                module = httpx2
                chosen += [
                    ("raw httpx2", lambda: raw_pass(stub, drill, args.concurrency, module)),
                    ("refcal+httpx2", lambda: refcal_pass(stub, drill, args.concurrency, workdir / "h2", True)),
                ]
            return chosen

        if args.warmup:
            for _, make in passes(synthetic_bench(min(args.warmup, args.items)), -1):
                asyncio.run(make())
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1}/{args.repeats}:")
            order = passes(bench, repeat)
            for label, make in order if repeat % 2 == 0 else order[::-1]:
                results.setdefault(label, []).append(timed(label, make))
        if args.profile:
            profile_refcal(stub, bench, args.concurrency, args.top)

    print(f"\nmedians over {args.repeats} repeat(s):")
    medians: dict[str, float] = {}
    for label, samples in results.items():
        medians[label] = rps = statistics.median(sample.throughput for sample in samples)
        cpu = statistics.median(sample.cpu_us for sample in samples)
        process_cpu = statistics.median(sample.process_cpu_us for sample in samples)
        stub_cpu = statistics.median(sample.stub_cpu_us for sample in samples)
        print(f"  {label:<15} {rps:7.1f} req/s  ratio to bound {rps / bound:.3f}  "
              f"CPU/req client {cpu:5.0f} µs, process {process_cpu:5.0f} µs, stub {stub_cpu:4.0f} µs")
    print(f"  refcal / raw httpx = {medians['refcal'] / medians['raw httpx']:.3f}; refcal / raw httpx/{SHARDS} "
          f"(the pool layout refcal's transport uses) = {medians['refcal'] / medians[f'raw httpx/{SHARDS}']:.3f}")
    if "refcal+httpx2" in medians:
        print(f"  refcal+httpx2 / raw httpx2 = {medians['refcal+httpx2'] / medians['raw httpx2']:.3f}")
    ratio = medians["refcal"] / bound
    print(f"RATIO refcal throughput / {bound:.0f} = {ratio:.3f} ({'meets' if ratio >= GOAL else 'MISSES'} "
          f"the {GOAL} goal)")
    print(f"wall time {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
