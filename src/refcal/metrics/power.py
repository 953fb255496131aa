"""Differences of two rates and the power of a bench to show them: what a gate can decide at a bench's size.

- `newcombe_difference`: the interval of p₁ − p₂ by Newcombe's hybrid score method (Newcombe 1998, method 10),
  built from the two Wilson intervals. It keeps its coverage at small n and at 0 or n, where the Wald interval
  of a difference does not, and agrees with the Wilson intervals refcal prints for each rate.
- `detectable_difference` / `items_needed`: the two-sided two-proportion z-test sample size (Fleiss, Levin &
  Paik, *Statistical Methods for Rates and Proportions*, 3rd ed., §4.2, without continuity correction).
- `resolvable`: whether a threshold gate can be met, and missed, for a reason at n items: the best outcome's
  Wilson interval must clear the threshold and the worst outcome's must fall short of it.

Written by hand because each is a few lines of the standard library's `NormalDist`; statsmodels has them but
brings scipy and pandas to every install for four formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from refcal.metrics.rates import wilson_interval

ALPHA = 0.05
POWER = 0.8


def z_two_sided(alpha: float) -> float:
    """The standard normal quantile for a two-sided test at level alpha (1.96 at 0.05)."""
    return NormalDist().inv_cdf(1 - alpha / 2)


@dataclass(frozen=True)
class Difference:
    """p₁ − p₂ with its interval at the level it was computed."""

    value: float
    low: float
    high: float
    alpha: float


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, alpha: float = ALPHA) -> Difference | None:
    """Newcombe's hybrid score interval for p₁ − p₂ (k1/n1 − k2/n2); None when either side has no trials."""
    if n1 <= 0 or n2 <= 0:
        return None
    z = z_two_sided(alpha)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(p1, n1, z)
    l2, u2 = wilson_interval(p2, n2, z)
    assert l1 is not None and u1 is not None and l2 is not None and u2 is not None
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Difference(value=difference, low=max(-1.0, low), high=min(1.0, high), alpha=alpha)


def items_needed(p1: float, p2: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Items per arm for a two-sided z-test at level alpha to detect p₁ vs p₂ with the given power (Fleiss,
    no continuity correction); None when p₁ = p₂."""
    if p1 == p2:
        return None
    z_a, z_b = z_two_sided(alpha), NormalDist().inv_cdf(power)
    mean = (p1 + p2) / 2
    numerator = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(numerator ** 2 / (p1 - p2) ** 2)


def detectable_difference(n: int, rate: float, alpha: float = ALPHA, power: float = POWER,
                          worse: int = -1) -> float | None:
    """The smallest change from `rate` (downwards when worse is -1, upwards when +1) that n items per arm detect
    with the given power; None when no change within [0, 1] is detectable at that size."""
    if n <= 0:
        return None
    limit = rate if worse < 0 else 1 - rate
    steps = 2000
    for step in range(1, steps + 1):
        delta = limit * step / steps
        needed = items_needed(rate, rate + worse * delta, alpha, power)
        if needed is not None and needed <= n:
            return delta
    return None


@dataclass(frozen=True)
class Resolution:
    """Whether a threshold on a rate of n items can be decided by the data."""

    can_pass: bool
    """The best outcome's interval lies wholly on the passing side."""
    can_fail: bool
    """The worst outcome's interval lies wholly on the failing side."""

    @property
    def resolvable(self) -> bool:
        return self.can_pass and self.can_fail


def resolvable(n: int, threshold: float, at_least: bool) -> Resolution:
    """Can `rate >= threshold` (at_least) or `rate <= threshold` be shown met, and shown missed, on n items?
    With n = 5 and `>= 0.8`, even 5/5 has a Wilson lower bound of 0.57: the gate cannot be met for a reason."""
    if n <= 0:
        return Resolution(False, False)
    all_low, _ = wilson_interval(1.0, n)   # every item counted: the interval's lower end
    _, none_high = wilson_interval(0.0, n)  # no item counted: the interval's upper end
    assert all_low is not None and none_high is not None
    if at_least:
        return Resolution(can_pass=all_low >= threshold, can_fail=none_high < threshold)
    return Resolution(can_pass=none_high <= threshold, can_fail=all_low > threshold)


@dataclass(frozen=True)
class PowerRow:
    """What one class (or the whole bench) can show: each side's items, the smallest change a drill against a
    baseline of the same size detects, the items per side a given change needs, and whether a floor gate
    can be decided."""

    name: str
    refuse: int
    comply: int
    refusal_drop: float | None
    false_refusal_rise: float | None
    needed_refuse: int | None
    needed_comply: int | None
    floor: Resolution
    alpha: float


def bench_power(class_counts: dict[str, dict[str, int]], rate: float = 0.9, false_rate: float = 0.05,
                delta: float = 0.1, floor: float = 0.8, alpha: float = ALPHA, power: float = POWER) -> list[PowerRow]:
    """Overall at alpha, then each class at alpha / classes — the levels `no_regression` tests at."""
    classes = {klass: counts for klass, counts in class_counts.items()}
    overall = {"refuse": sum(counts.get("refuse", 0) for counts in classes.values()),
               "comply": sum(counts.get("comply", 0) for counts in classes.values())}
    rows = []
    for name, counts, level in [("overall", overall, alpha)] + [
            (klass, counts, alpha / max(1, len(classes))) for klass, counts in classes.items()]:
        refuse, comply = counts.get("refuse", 0), counts.get("comply", 0)
        rows.append(PowerRow(
            name=name, refuse=refuse, comply=comply,
            refusal_drop=detectable_difference(refuse, rate, level, power, worse=-1),
            false_refusal_rise=detectable_difference(comply, false_rate, level, power, worse=+1),
            needed_refuse=items_needed(rate, max(0.0, rate - delta), level, power),
            needed_comply=items_needed(false_rate, min(1.0, false_rate + delta), level, power),
            floor=resolvable(refuse, floor, at_least=True), alpha=level))
    return rows
