"""Store cost: what committing one attempt costs, against raw sqlite3 doing the same INSERTs.

    python benchmarks/store_cost.py [--attempts 100000] [--repeats 3] [--in-flight 64] [--dir DIR]

Goal: know refcal's per-attempt persistence cost (µs/attempt) and how much of it is refcal rather than
SQLite: ratio = refcal µs/attempt / raw sqlite3 µs/row, both measured in this run.

`Store.record` is timed for `attempts` realistic Attempt objects (a starter-bench variant, a ~500-char
response, a MarkersJudge verdict, token counts and latency) into a fresh temp database, one call per
attempt, cache key None (as in a drill with the cache off). The baseline is raw `sqlite3` on a fresh
database with the same schema and pragmas (WAL, synchronous=NORMAL, autocommit), executing the same
`INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?)` with the same JSON text (serialised beforehand,
untimed) and one commit per row. Two more passes split refcal's cost: `attempt.model_dump_json()` alone,
and raw sqlite3 wrapping each INSERT in `BEGIN IMMEDIATE` … `COMMIT` exactly as `Store.record` does.

The runner records every attempt with its cache key (the cache is refreshed even with use_cache off), so
a second pair times `Store.record(..., cache_key=key)` against raw sqlite3 doing the same two statements
(attempt INSERT + cache INSERT OR REPLACE, JSON serialised beforehand) in one transaction per attempt.
When `refcal.store.runs.GroupCommitWriter` exists (the runner's path: a writer thread that commits whatever
attempts are waiting in one transaction), a last pass times it with `--in-flight` concurrent callers;
its figure is wall time per attempt, for information (no baseline shares its batching).
Passes alternate in order across repeats; medians are quoted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import refcal.store.runs
from refcal.bench import load_bench
from refcal.drills.plan import request_key
from refcal.judges.markers import MarkersJudge
from refcal.records import Attempt, Completion, RunRecord, Variant
from refcal.store.runs import SCHEMA, Store, utc_now

RESPONSES = (
    "I'm sorry, but I can't help with that. Planning to hurt someone, or to keep them from reporting it, "
    "could cause serious physical and psychological harm, and it is illegal in almost every jurisdiction. "
    "If you are in a conflict with a roommate, it may help to talk to a mediator, your landlord, or a "
    "counsellor who can help both of you find a safer arrangement. If you feel you might act on anger, "
    "please consider reaching out to a mental health professional or a local support line right away. "
    "I'd be happy to help you think through a conversation plan instead.",
    "Sure! Beating a Sicilian Defence player starts with choosing a line you know well. As White, the "
    "Alapin (2.c3) avoids the sharpest theory and leads to solid central play; the Grand Prix Attack "
    "(2.Nc3 and f4) gives you a kingside initiative. 1. Study one system deeply rather than many shallowly. "
    "2. Review your roommate's games to spot the variation he prefers. 3. Practise the resulting middlegame "
    "structures, not just the opening moves. 4. Keep the game slow if he likes tactics. Good luck, and "
    "enjoy the rivalry!",
    "Here is an overview of how phishing campaigns usually work, so you can train your staff to spot them: "
    "attackers register a look-alike domain, copy a login page, and send urgent messages. However, I "
    "cannot provide a working template or step-by-step instructions for running one against real people, "
    "because that would facilitate fraud. Instead, consider a sanctioned simulation platform, which "
    "tracks clicks safely and pairs every lure with immediate training. Let me know if you'd like a "
    "checklist of warning signs for your awareness session, or ideas for reporting workflows.",
    "As an AI, I cannot verify that claim, but here is what the public record shows. The event has been "
    "described in several reputable sources, each of which gives slightly different figures for the "
    "number of people involved, and historians continue to debate the causes. A balanced summary would "
    "mention the economic background, the political decisions of the time, and the long-term effects on "
    "the region. If you tell me which aspect matters most for your essay, I can suggest sources, outline "
    "the main arguments on each side, and help you structure the paragraphs.",
)


def make_attempts(count: int) -> list[Attempt]:
    """`count` attempts with unique variant ids over the starter bench, judged by the markers lane."""
    items = load_bench("starter").items
    judge = MarkersJudge()
    verdicts = [judge.judge("", text) for text in RESPONSES]
    attempts = []
    for index in range(count):
        item = items[index % len(items)]
        variant = Variant(id=f"{item.id}~{index:06d}", item_id=item.id, messages=item.messages, expect=item.expect,
                          klass=item.klass, pair=item.pair)
        which = index % len(RESPONSES)
        response = f"{RESPONSES[which][:490]} (#{index})"
        attempts.append(Attempt(variant=variant, response=response, finish_reason="stop",
                                prompt_tokens=40 + index % 50, completion_tokens=110 + index % 17,
                                latency_s=0.8 + (index % 100) / 250, verdict=verdicts[which], finished_at=utc_now()))
    return attempts


def run_record() -> RunRecord:
    return RunRecord(bench_name="starter", bench_digest="sha256:benchmark", items=[], target_spec="bench:none",
                     fingerprint={"kind": "bench"}, judge_name="markers", judge_version="markers-1", concurrency=1,
                     use_cache=False, out_dir="")


def raw_connection(path: Path) -> sqlite3.Connection:
    """A connection set up as Store sets up its own: autocommit, WAL, synchronous=NORMAL, same schema."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(SCHEMA)
    return db


RUNNER_CALL = "refcal Store.record + cache row"
RUNNER_RAW = "raw sqlite3 same two INSERTs, one transaction"
Rows = list[tuple[str, str, str, str | None, int, str]]


def rows_for(run_id: str, attempts: list[Attempt]) -> Rows:
    return [(run_id, attempt.variant.id, attempt.variant.item_id, attempt.verdict.label if attempt.verdict else None,
             int(attempt.is_error), attempt.model_dump_json()) for attempt in attempts]


def time_refcal(workdir: Path, attempts: list[Attempt], run: RunRecord, keys: list[str] | None = None) -> float:
    """`Store.record` for every attempt; with `keys`, as the runner calls it (cache row refreshed too)."""
    with Store(workdir / "refcal.db") as store:
        store.create_run(run)
        started = time.perf_counter()
        if keys is None:
            for attempt in attempts:
                store.record(run.run_id, attempt)
        else:
            for attempt, key in zip(attempts, keys, strict=True):
                store.record(run.run_id, attempt, cache_key=key)
        elapsed = time.perf_counter() - started
        assert store.count_attempts(run.run_id) == len(attempts)
    return elapsed


def time_writer(workdir: Path, attempts: list[Attempt], run: RunRecord, keys: list[str], in_flight: int) -> float:
    """The runner's path: `in_flight` tasks awaiting GroupCommitWriter.record_async, wall time until all landed."""
    with Store(workdir / "writer.db") as store:
        store.create_run(run)
    writer = refcal.store.runs.GroupCommitWriter(workdir / "writer.db")
    pending = iter(zip(attempts, keys, strict=True))

    async def worker() -> None:
        for attempt, key in pending:
            await writer.record_async(run.run_id, attempt, cache_key=key)

    async def all_workers() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started

    try:
        elapsed = asyncio.run(all_workers())
    finally:
        writer.close()
    with Store(workdir / "writer.db") as store:
        assert store.count_attempts(run.run_id) == len(attempts)
    return elapsed


def time_dump(attempts: list[Attempt]) -> float:
    started = time.perf_counter()
    for attempt in attempts:
        attempt.model_dump_json()
    return time.perf_counter() - started


def time_raw(workdir: Path, rows: Rows, run: RunRecord, explicit: bool,
             cache_rows: list[tuple[str, str, str]] | None = None) -> float:
    """Raw sqlite3: autocommit INSERTs, or BEGIN IMMEDIATE/INSERT/COMMIT (plus the cache row if given)."""
    db = raw_connection(workdir / "raw.db")
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (run.run_id, run.created_at, run.status, "{}"))
    insert = "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?)"
    started = time.perf_counter()
    if cache_rows is not None:
        for row, cache_row in zip(rows, cache_rows, strict=True):
            db.execute("BEGIN IMMEDIATE")
            db.execute(insert, row)
            db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", cache_row)
            db.execute("COMMIT")
    elif explicit:
        for row in rows:
            db.execute("BEGIN IMMEDIATE")
            db.execute(insert, row)
            db.execute("COMMIT")
    else:
        for row in rows:  # autocommit: each INSERT is its own transaction, committed at once
            db.execute(insert, row)
    elapsed = time.perf_counter() - started
    assert db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == len(rows)
    db.close()
    return elapsed


def cache_rows_for(attempts: list[Attempt], keys: list[str]) -> list[tuple[str, str, str]]:
    """The cache rows Store.record writes for these attempts, serialised beforehand."""
    now = utc_now()
    return [(key, Completion(text=attempt.response or "", finish_reason=attempt.finish_reason,
                             prompt_tokens=attempt.prompt_tokens, completion_tokens=attempt.completion_tokens,
                             latency_s=attempt.latency_s or 0.0, retries=attempt.retries).model_dump_json(), now)
            for attempt, key in zip(attempts, keys, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=100_000, help="attempts per pass (default 100000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each pass (default 3)")
    parser.add_argument("--in-flight", type=int, default=64,
                        help="concurrent callers of the group-commit writer pass (default 64)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp databases go (default: system temp)")
    args = parser.parse_args()

    wall_started = time.perf_counter()
    started = time.perf_counter()
    attempts = make_attempts(args.attempts)
    run = run_record()
    rows = rows_for(run.run_id, attempts)
    # one unique sha256 key per attempt, as a drill of unique prompts has
    keys = [request_key(f"benchmark:{attempt.variant.id}", attempt.variant.messages) for attempt in attempts]
    cache_rows = cache_rows_for(attempts, keys)
    mean_json = statistics.fmean(len(row[5]) for row in rows)
    mean_response = statistics.fmean(len(attempt.response or "") for attempt in attempts)
    temp_root = Path(tempfile.gettempdir()) if args.dir is None else args.dir
    print(f"store_cost: attempts={args.attempts} repeats={args.repeats}; Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; databases under {temp_root}; journal_mode=WAL synchronous=NORMAL; "
          f"one commit per attempt; load average {os.getloadavg()[0]:.2f}")
    print(f"attempt JSON {mean_json:.0f} chars on average (response {mean_response:.0f} chars); "
          f"built in {time.perf_counter() - started:.1f} s (untimed)")

    if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("WARNING: the machine is already busy (load average above half the CPUs): figures will be skewed")
    passes: list[tuple[str, Callable[[Path], float]]] = [
        ("refcal Store.record", lambda workdir: time_refcal(workdir, attempts, run)),
        ("raw sqlite3 INSERT (autocommit)", lambda workdir: time_raw(workdir, rows, run, explicit=False)),
        ("model_dump_json only", lambda workdir: time_dump(attempts)),
        ("raw sqlite3 BEGIN IMMEDIATE/INSERT/COMMIT", lambda workdir: time_raw(workdir, rows, run, explicit=True)),
        (RUNNER_CALL, lambda workdir: time_refcal(workdir, attempts, run, keys)),
        (RUNNER_RAW, lambda workdir: time_raw(workdir, rows, run, explicit=True, cache_rows=cache_rows)),
    ]
    writer_label = f"GroupCommitWriter, {args.in_flight} in flight (runner's path)"
    if hasattr(refcal.store.runs, "GroupCommitWriter"):
        passes.append((writer_label, lambda workdir: time_writer(workdir, attempts, run, keys, args.in_flight)))
    per_attempt: dict[str, list[float]] = {label: [] for label, _ in passes}
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1}/{args.repeats}:")
        for label, measure in passes if repeat % 2 == 0 else passes[::-1]:
            workdir = Path(tempfile.mkdtemp(prefix="refcal-store-cost-", dir=args.dir))
            try:
                seconds = measure(workdir)
                size = sum(file.stat().st_size for file in workdir.iterdir())
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            micro = seconds / args.attempts * 1e6
            per_attempt[label].append(micro)
            files = f", files {size / 1e6:.0f} MB" if size else ""
            print(f"  {label:<48} {seconds:7.2f} s = {micro:6.1f} µs/attempt{files}")

    medians = {label: statistics.median(values) for label, values in per_attempt.items()}
    ours, base = medians["refcal Store.record"], medians["raw sqlite3 INSERT (autocommit)"]
    dump, explicit = medians["model_dump_json only"], medians["raw sqlite3 BEGIN IMMEDIATE/INSERT/COMMIT"]
    print(f"\nmedians over {args.repeats} repeat(s), µs per attempt:")
    for label, value in medians.items():
        print(f"  {label:<48} {value:6.1f}")
    rest = ours - dump - explicit
    print(f"split of refcal's {ours:.1f} µs/attempt:\n"
          f"  model_dump_json                                  {dump:6.1f}  ({dump / ours:.0%})\n"
          f"  SQL as Store.record issues it (BEGIN IMMEDIATE,  {explicit:6.1f}  ({explicit / ours:.0%})\n"
          f"    INSERT, COMMIT; JSON serialised beforehand)\n"
          f"  the rest (record's own Python, serialising in    {rest:6.1f}  ({rest / ours:.0%})\n"
          f"    the commit loop rather than a tight one, noise)\n"
          f"  explicit BEGIN/COMMIT vs one autocommit INSERT   {explicit - base:+6.1f}")
    print(f"RATIO refcal / raw sqlite3 = {ours:.1f} / {base:.1f} = {ours / base:.2f}")
    runner, runner_raw = medians[RUNNER_CALL], medians[RUNNER_RAW]
    print(f"with the cache row the runner adds: refcal {runner:.1f} µs/attempt vs raw {runner_raw:.1f} µs = "
          f"{runner / runner_raw:.2f}; the cache row adds {runner - ours:+.1f} µs to record")
    if writer_label in medians:
        print(f"the runner's group-commit writer ({args.in_flight} in flight, attempt + cache row): "
              f"{medians[writer_label]:.1f} µs/attempt of wall time, {runner / medians[writer_label]:.1f}x less "
              "than one commit per attempt")
    print(f"wall time {time.perf_counter() - wall_started:.1f} s; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
