"""Fast-drill planning speed and memory: variants generated per second on one core, and peak RSS while
1,000,000 variants stream through a no-op sink.

    python benchmarks/mutation_speed.py [--variants 200000] [--million 1000000] [--repeats 3]

The bench is the built-in starter bench's 140 prompts repeated under new ids until the plan reaches the
wanted size. Baseline in the same run: the same plan without mutators (each item as written), so the
ratio shows what mutation itself costs. Goals (issue 4): ≥ 100,000 variants/s for single mutators,
≥ 30,000/s for depth-3 chains, peak RSS < 1 GiB for 1,000,000 variants.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from refcal.bench import load_bench
from refcal.bench.items import Bench, Item
from refcal.drills.mutators import FAMILIES, select
from refcal.drills.plan import plan_variants
from refcal.records import MutationPlan

PER_ITEM = 20


def scaled_bench(items: int) -> Bench:
    starter = load_bench("starter").items
    copies = [Item.model_validate({**item.model_dump(), "id": f"{item.id}-{n}",
                                   "pair": f"{item.pair}-{n}" if item.pair else None})
              for n in range(items // len(starter) + 1) for item in starter][:items]
    return Bench(name="scaled", items=tuple(copies))


def rate(bench: Bench, mutation: MutationPlan | None, repeats: int) -> tuple[float, int]:
    rates, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = sum(1 for _ in plan_variants(bench, mutation=mutation))
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=200_000)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"one core; load average {os.getloadavg()[0]:.2f}; {PER_ITEM} mutated variants per item "
          f"(+ the item as written); medians of {args.repeats}")
    bench = scaled_bench(args.variants // (PER_ITEM + 1))
    baseline, count = rate(bench, None, args.repeats)
    print(f"  baseline, items as written only: {baseline:>10,.0f} variants/s ({count:,} variants)")
    cases = [(family, select(family), 1) for family in FAMILIES]
    cases += [("all, depth 1", select("all"), 1), ("all, depth 3", select("all"), 3)]
    for name, mutators, depth in cases:
        plan = MutationPlan(mutators=mutators, per_item=min(PER_ITEM, len(mutators) if depth == 1 else PER_ITEM),
                            depth=depth, seed=1)
        value, count = rate(bench, plan, args.repeats)
        goal = 100_000 if depth == 1 else 30_000
        print(f"  {name:<18} {value:>10,.0f} variants/s ({count:,} variants)   ratio to baseline "
              f"{value / baseline:.3f}   to the {goal:,}/s goal {value / goal:.2f}")

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    big = scaled_bench(args.million // (PER_ITEM + 1) + 1)
    plan = MutationPlan(mutators=select("all"), per_item=PER_ITEM, depth=3, seed=2)
    start = time.perf_counter()
    streamed = 0
    for _ in plan_variants(big, mutation=plan):  # the no-op sink
        streamed += 1
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  streamed {streamed:,} variants (depth ≤ 3) through a no-op sink in {elapsed:.1f} s "
          f"({streamed / elapsed:,.0f}/s); peak RSS {peak / 1024:.0f} MiB (before the big plan {before / 1024:.0f} "
          f"MiB; goal < 1,024 MiB)")


if __name__ == "__main__":
    main()
