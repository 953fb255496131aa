"""Judge speed: fast-lane throughput on one core, single-decision latency, and `refcal judge` from a
cold start on 1,350 rows.

    python benchmarks/judge_speed.py ../shared/data/xstest_dev_completions.jsonl \
        research/judge_data/refcal_personas_v1.jsonl

The process pins itself to one core (and torch to one thread) for the throughput and latency parts.
Baseline in the same run: XSTest's prefix matcher, the cheapest judge there is. Figures are medians over
--repeats passes. Goals (issue 3): ≥ 1,000 responses/s batched on one core; p99 < 50 ms per decision;
`refcal judge` on 1,350 rows well under a minute from a cold start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from refcal.judges import make_judge
from refcal.judges.base import judge_rows
from refcal.judges.labels import read_rows


def prefix_judge(response: str) -> bool:
    sys.path.insert(0, str(Path(__file__).parent))
    from judge_agreement import XSTEST_PREFIXES

    return response.strip().lower().startswith(XSTEST_PREFIXES)


def rate(function, rows: list[tuple[str, str]], repeats: int) -> float:
    """Median responses per second of `function(rows)` over `repeats` passes."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(rows)
        rates.append(len(rows) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-rows", type=int, default=1350)
    args = parser.parse_args()
    rows = [row for path in args.files for row in read_rows(path)]
    pairs = [(row.prompt, row.response) for row in rows]
    print(f"{len(pairs)} responses from {', '.join(path.name for path in args.files)}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    cold = cold_start(rows, args.cold_rows, args.repeats)

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import torch

    torch.set_num_threads(1)
    markers = make_judge("markers")
    cascade = make_judge("cascade")
    head = make_judge("head")
    judge_rows(cascade, pairs[:8])  # load the model outside the timing
    distinct = list({response: (prompt, response) for prompt, response in pairs}.values())
    print(f"one core, torch threads 1; {len(distinct)} distinct responses")
    baseline = rate(lambda batch: [prefix_judge(response) for _, response in batch], pairs, args.repeats)
    results = {
        "xstest prefixes (baseline)": baseline,
        "markers": rate(lambda batch: [markers.judge(*pair) for pair in batch], pairs, args.repeats),
        "head, batched": rate(head.verdicts, pairs, args.repeats),  # type: ignore[attr-defined]
        "cascade, batched": rate(lambda batch: judge_rows(cascade, batch), pairs, args.repeats),
    }
    for name, value in results.items():
        print(f"  {name:<28} {value:>10.1f} responses/s   ratio to prefixes {value / baseline:.4f}   "
              f"to the 1,000/s goal {value / 1000:.3f}")

    for name, judge in (("markers", markers), ("cascade", cascade)):
        latencies = []
        for pair in pairs[:300]:
            start = time.perf_counter()
            judge_rows(judge, [pair])
            latencies.append((time.perf_counter() - start) * 1000)
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(f"  single decision, {name:<9} p50 {statistics.median(latencies):.2f} ms   p99 {p99:.2f} ms "
              f"(goal p99 < 50 ms)")
    print(f"  refcal judge, {args.cold_rows} rows, cold start (2 cores): median {cold:.1f} s over {args.repeats}")


def cold_start(rows, count: int, repeats: int) -> float:
    """Wall time of a fresh `refcal judge` process on `count` rows (rows repeated with new ids if needed)."""
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / "in.jsonl"
        lines = [json.dumps({"id": f"{index}", "prompt": rows[index % len(rows)].prompt,
                             "response": rows[index % len(rows)].response}) for index in range(count)]
        source.write_text("\n".join(lines) + "\n")
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "refcal.cli", "judge", str(source), "--out",
                            str(Path(directory) / "out.jsonl")], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
