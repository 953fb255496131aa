"""Watch sweep: throughput on one core with the fast lanes, memory over a multi-GB log, and the time from a
surge of false refusals to the alert.

    python benchmarks/watch_sweep.py throughput [--lines 100000] [--repeats 3]
    python benchmarks/watch_sweep.py memory [--gb 5] [--every-gb 0.5] [--dir /tmp]
    python benchmarks/watch_sweep.py surge [--seeds 20] [--window 500] [--rate 50] [--surge 0.12]

Traffic is written in the guard's log shape (refcal.guard.exchange_log: request, response, time, route, and the
request's risk score with its scorer version): requests are the shipped benches' (routine instructions and the
starter bench's look-alikes answered, its must-refuse items refused), responses are the hand-written refusals
and answers of research/judge_data (split by the markers lane). Baseline traffic: 5 % must-refuse requests
refused, 2 % benign requests refused, the rest answered.

throughput: the process pins itself to one core (torch to one thread). Baselines in the same run, passes
alternating: reading the same file and `json.loads` of every line (the least any sweep must do), orjson
likewise when installed, and the sweep with the full markers lane instead of its prefiltered twin. A last pass
sweeps lines that carry no logged risk score, with every refused request unique, so each refusal is embedded:
that rate is bound by the embedding model, and printed apart. Rates are medians, by wall clock and by the
process's CPU time (the machine may be shared; CPU time is what one core gives).

memory: writes a log of --gb GB (streamed, then deleted), sweeps it in a child process and prints the resident
set (now and peak) every --every-gb GB. Flat means the peak at the end is the peak at the first checkpoint.

surge: per seed, 20 windows of baseline traffic then a surge: benign requests refused 12 points more often
(2 % → 14 % of traffic). Prints, over seeds, the windows from the surge's start to the first breach of each
metric on the `all` segment, the same in seconds of log time at --rate exchanges per second, and the sweep's
processing time per window; alarms before the surge are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
JUDGE_DATA = ROOT / "research" / "judge_data"
START = datetime(2026, 3, 1, tzinfo=UTC)


def pin_one_core() -> None:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch

    torch.set_num_threads(1)


def load_note() -> str:
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    warning = "  (WARNING: the machine is busy; figures are skewed)" if load > 0.5 * cpus else ""
    return f"load average {load:.2f} on {cpus} CPUs{warning}"


class Traffic:
    """Requests, responses and the guard's logged risk scores to draw log lines from."""

    def __init__(self) -> None:
        from refcal.bench import load_bench
        from refcal.judges.markers import MarkersJudge
        from refcal.judges.risk import RequestRisk

        markers = MarkersJudge()
        self.refusals, self.answers = [], []
        for path in sorted(JUDGE_DATA.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                response = json.loads(line)["response"]
                label = markers.judge("", response).label
                (self.refusals if label == "refusal" else self.answers if label == "compliance" else []).append(
                    response)
        starter = load_bench("starter")
        self.benign = [item.prompt for item in load_bench("routine").items]
        self.benign += [item.prompt for item in starter.items if item.expect == "comply"]
        self.harmful = [item.prompt for item in starter.items if item.expect == "refuse"]
        self.risk = RequestRisk.default()
        prompts = self.benign + self.harmful
        self.scores = {prompt: {**score.model_dump(), "version": self.risk.version, "mode": "flag", "threshold": 7.0}
                       for prompt, score in zip(prompts, self.risk.score_many(prompts), strict=True)}

    def line(self, rng: random.Random, at: datetime, harmful: float = 0.05, benign_refused: float = 0.02,
             logged_risk: bool = True, unique: int | None = None) -> str:
        draw = rng.random()
        if draw < harmful:
            prompt, response = rng.choice(self.harmful), rng.choice(self.refusals)
        elif draw < harmful + benign_refused:
            prompt, response = rng.choice(self.benign), rng.choice(self.refusals)
        else:
            prompt, response = rng.choice(self.benign), rng.choice(self.answers)
        record = {"time": at.isoformat(timespec="milliseconds"),
                  "request": {"model": "m", "messages": [{"role": "user", "content": prompt}]},
                  "response": {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant",
                                                                                       "content": response},
                                                                "finish_reason": "stop"}]},
                  "route": "upstream", "status": 200, "latency_ms": 120.5}
        if logged_risk:
            record["risk"] = self.scores[prompt]
        elif unique is not None:
            record["request"]["messages"][0]["content"] = f"{prompt} (ticket {unique})"
        return json.dumps(record)

    def write(self, path: Path, count: int, seed: int, **options: object) -> None:
        rng = random.Random(seed)
        with path.open("w", encoding="utf-8") as file:
            for index in range(count):
                file.write(self.line(rng, START + timedelta(milliseconds=20 * index), unique=index,  # type: ignore[arg-type]
                                     **options) + "\n")


def sweep_once(log: Path, folder: Path, judge: object | None = None, classifier: object | None = None,
               window: int = 500, stop: Callable[[object], bool] | None = None) -> tuple[object, float, float]:
    """One pass of a fresh sweep over `log`; (report, wall seconds, CPU seconds)."""
    from refcal.watch.sweep import Sweep, SweepSettings

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with Sweep(SweepSettings(logs=[log], store=folder / "store.db", judge="markers", window=window), judge=judge,
               classifier=classifier) as sweep:  # type: ignore[arg-type]
        wall, cpu = time.perf_counter(), time.process_time()
        report = sweep.run_pass((lambda: stop(sweep)) if stop else (lambda: False))
        return report, time.perf_counter() - wall, time.process_time() - cpu


def json_baseline(log: Path, loads: Callable[[bytes], object]) -> tuple[int, float, float]:
    """Read the file in 1 MiB chunks, split lines, parse each: what any sweep must do at least."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    pending = b""
    with log.open("rb") as file:
        while chunk := file.read(1 << 20):
            data = pending + chunk
            cut = data.rfind(b"\n")
            for line in data[:cut].split(b"\n"):
                loads(line)
                count += 1
            pending = data[cut + 1:]
    return count, time.perf_counter() - wall, time.process_time() - cpu


def throughput(args: argparse.Namespace) -> None:
    pin_one_core()
    from refcal.judges.markers import MarkersJudge
    from refcal.watch.refusal_class import RefusalClassifier

    traffic = Traffic()
    folder = Path(tempfile.mkdtemp(prefix="refcal-watch-bench-"))
    log = folder / "guard.log"
    traffic.write(log, args.lines, seed=1)
    size = log.stat().st_size
    print(f"{args.lines:,} lines ({size / args.lines:.0f} bytes/line, {size / 2**20:.0f} MiB) in the guard's shape; "
          f"{len(traffic.refusals)} refusal and {len(traffic.answers)} answer texts; one core; {load_note()}")
    try:
        import orjson
    except ImportError:
        orjson = None
    passes: dict[str, list[tuple[float, float]]] = {}
    classifier = RefusalClassifier(traffic.risk)
    kinds = ["json.loads", *(["orjson.loads"] if orjson else []), "sweep (prefiltered markers)",
             "sweep (full markers lane)"]
    shortcuts = 0
    for repeat in range(args.repeats):
        for kind in kinds if repeat % 2 == 0 else reversed(kinds):
            if kind == "json.loads":
                count, wall, cpu = json_baseline(log, json.loads)
            elif kind == "orjson.loads":
                count, wall, cpu = json_baseline(log, orjson.loads)  # type: ignore[union-attr]
            else:
                judge = MarkersJudge(prefilter="prefiltered" in kind)
                report, wall, cpu = sweep_once(log, folder / "sweep", judge, classifier)
                count = report.lines  # type: ignore[attr-defined]
                shortcuts = judge.shortcuts if judge.prefilter else shortcuts
            passes.setdefault(kind, []).append((count / wall, count / cpu))
    base = statistics.median(rate for rate, _ in passes["json.loads"])
    base_cpu = statistics.median(rate for _, rate in passes["json.loads"])
    print(f"{'pass':<30} {'lines/s (wall)':>15} {'lines/CPU-s':>12} {'ratio to json.loads':>20}")
    for kind, rates in passes.items():
        wall_rate = statistics.median(rate for rate, _ in rates)
        cpu_rate = statistics.median(rate for _, rate in rates)
        print(f"{kind:<30} {wall_rate:>15,.0f} {cpu_rate:>12,.0f} {wall_rate / base:>10.3f} "
              f"(CPU {cpu_rate / base_cpu:.3f})")
    print(f"prefilter: {shortcuts:,} of {args.lines:,} responses skipped the phrase search; refusals classed from the "
          f"logged score: {classifier.reused:,}, embedded: {classifier.embedded:,}")
    embedded = folder / "unscored.log"
    count = min(args.lines, args.unscored_lines)
    traffic.write(embedded, count, seed=2, logged_risk=False)
    fresh = RefusalClassifier(traffic.risk)
    report, wall, cpu = sweep_once(embedded, folder / "sweep", MarkersJudge(), fresh)
    print(f"without logged scores, every refused request new ({count:,} lines, {fresh.embedded:,} refusals embedded "
          f"on one core): {count / wall:,.0f} lines/s wall, {count / cpu:,.0f} lines/CPU-s; "
          f"{fresh.embedded / cpu:,.0f} refusals classed per CPU-s")
    shutil.rmtree(folder, ignore_errors=True)


def memory(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="refcal-watch-memory-", dir=args.dir))
    log = folder / "guard.log"
    target = int(args.gb * 2**30)
    print(f"writing {args.gb:g} GB to {log} …  ({load_note()})", flush=True)
    traffic = Traffic()
    rng = random.Random(3)
    pool = [traffic.line(rng, START) for _ in range(20_000)]
    stamp = START.isoformat(timespec="milliseconds")
    written, index = 0, 0
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as file:
        while written < target:
            lines = [pool[(index + offset) % len(pool)].replace(
                stamp, (START + timedelta(milliseconds=20 * (index + offset))).isoformat(timespec="milliseconds"), 1)
                + "\n" for offset in range(10_000)]
            text = "".join(lines)
            file.write(text)
            written += len(text.encode("utf-8"))
            index += len(lines)
    print(f"wrote {written / 2**30:.2f} GiB, {index:,} lines in {time.perf_counter() - started:.0f} s", flush=True)
    del traffic, pool
    try:
        child = subprocess.run([sys.executable, __file__, "_memory_child", str(log), str(folder / "sweep"),
                                str(args.every_gb)], check=True, capture_output=True, text=True)
        print(child.stdout, end="")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def _memory_child(log: str, folder: str, every_gb: float) -> None:
    """Sweep `log` in this fresh process; print RSS at every `every_gb` GB read."""
    pin_one_core()
    from refcal.watch.refusal_class import RefusalClassifier

    step, next_mark = int(every_gb * 2**30), int(every_gb * 2**30)
    rows = []
    classifier = RefusalClassifier()
    classifier.risk.score("warm up")  # build the scorer (it embeds the benches) before the clock starts
    started = time.perf_counter()

    def checkpoint(sweep: object) -> bool:
        nonlocal next_mark
        offset = sum(cursor.offset for cursor in sweep.tail.cursors(log))  # type: ignore[attr-defined]
        if offset >= next_mark:
            rows.append((offset, sweep.state.totals.lines, _rss_mib(), _peak_mib(),  # type: ignore[attr-defined]
                         time.perf_counter() - started))
            next_mark += step
        return False

    report, wall, cpu = sweep_once(Path(log), Path(folder), classifier=classifier, stop=checkpoint)
    print(f"{'GiB read':>8} {'lines':>12} {'RSS MiB':>8} {'peak RSS MiB':>13} {'elapsed s':>10}")
    for offset, lines, rss, peak, elapsed in rows:
        print(f"{offset / 2**30:>8.2f} {lines:>12,} {rss:>8.0f} {peak:>13.0f} {elapsed:>10.0f}")
    print(f"end: {report.lines:,} lines, {report.exchanges:,} exchanges, {len(report.breaches)} breaches; "  # type: ignore[attr-defined]
          f"peak RSS {_peak_mib():.0f} MiB; {report.lines / wall:,.0f} lines/s wall, "  # type: ignore[attr-defined]
          f"{report.lines / cpu:,.0f} lines/CPU-s")  # type: ignore[attr-defined]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def surge(args: argparse.Namespace) -> None:
    pin_one_core()
    from refcal.judges.markers import MarkersJudge
    from refcal.watch.refusal_class import RefusalClassifier

    traffic = Traffic()
    classifier = RefusalClassifier(traffic.risk)
    folder = Path(tempfile.mkdtemp(prefix="refcal-watch-surge-"))
    baseline_windows, surge_windows = 20, 10
    onset = baseline_windows * args.window
    step = timedelta(seconds=1 / args.rate)
    surge_start = START + step * onset
    print(f"{args.seeds} seeds; windows of {args.window} at {args.rate:g} exchanges/s ({args.window / args.rate:g} s "
          f"of traffic each); {baseline_windows} windows at 5 % + 2 % refusals, then benign requests refused "
          f"{args.surge:.0%} more often for {surge_windows} windows; {load_note()}")
    found: dict[str, list[tuple[int, float]]] = {"refusal": [], "likely_false_refusal": []}
    missed = {metric: 0 for metric in found}
    early = 0
    per_window: list[float] = []
    for seed in range(args.seeds):
        rng = random.Random(1000 + seed)
        log = folder / f"surge-{seed}.log"
        with log.open("w", encoding="utf-8") as file:
            for index in range((baseline_windows + surge_windows) * args.window):
                extra = args.surge if index >= onset else 0.0
                file.write(traffic.line(rng, START + step * index, benign_refused=0.02 + extra) + "\n")
        report, wall, _ = sweep_once(log, folder / "sweep", MarkersJudge(), classifier, window=args.window)
        per_window.append(wall / (baseline_windows + surge_windows))
        breaches = [breach for breach in report.breaches if breach.segment == "all"]  # type: ignore[attr-defined]
        early += sum(breach.index < baseline_windows for breach in breaches)
        for metric in found:
            after = [breach for breach in breaches if breach.metric == metric and breach.index >= baseline_windows]
            if not after:
                missed[metric] += 1
                continue
            first = min(after, key=lambda breach: breach.index)
            detected = datetime.fromisoformat(first.detected_at)
            found[metric].append((first.index - baseline_windows + 1, (detected - surge_start).total_seconds()))
        log.unlink()
    print(f"{'metric':<22} {'detected':>9} {'windows (median / p90 / max)':>30} {'log seconds (median / p90)':>28}")
    for metric, hits in found.items():
        windows = sorted(hit[0] for hit in hits)
        seconds = sorted(hit[1] for hit in hits)
        if not hits:
            print(f"{metric:<22} {0:>4}/{args.seeds:<4} —")
            continue
        p90 = windows[min(len(windows) - 1, int(0.9 * len(windows)))]
        s90 = seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))]
        print(f"{metric:<22} {len(hits):>4}/{args.seeds:<4} {statistics.median(windows):>14g} / {p90} / "
              f"{windows[-1]:<6} {statistics.median(seconds):>15.1f} / {s90:.1f}")
    print(f"windows counted from the one the surge starts in (1 = detected in that window); alarms on `all` before "
          f"the surge: {early} in {args.seeds * baseline_windows} baseline windows (the first 10 set the baseline); "
          f"the sweep took {statistics.median(per_window) * 1000:.0f} ms of wall time per window of "
          f"{args.window} (median), so a live sweep adds at most one --every interval plus that")
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_memory_child":
        _memory_child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    part = commands.add_parser("throughput")
    part.add_argument("--lines", type=int, default=100_000)
    part.add_argument("--unscored-lines", type=int, default=10_000)
    part.add_argument("--repeats", type=int, default=3)
    part = commands.add_parser("memory")
    part.add_argument("--gb", type=float, default=5.0)
    part.add_argument("--every-gb", type=float, default=0.5)
    part.add_argument("--dir", default=None, help="where to write the log (default: the temp folder)")
    part.add_argument("--keep", action="store_true")
    part = commands.add_parser("surge")
    part.add_argument("--seeds", type=int, default=20)
    part.add_argument("--window", type=int, default=500)
    part.add_argument("--rate", type=float, default=50.0)
    part.add_argument("--surge", type=float, default=0.12)
    args = parser.parse_args()
    {"throughput": throughput, "memory": memory, "surge": surge}[args.command](args)


if __name__ == "__main__":
    main()
