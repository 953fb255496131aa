"""Rates with Wilson score intervals: the one way refcal states a share."""

from __future__ import annotations

import math

from pydantic import BaseModel

Z_95 = 1.959963984540054


class Rate(BaseModel):
    """k of n, with a Wilson score interval."""

    value: float | None
    """k / n; None when n is 0."""
    ci_low: float | None
    ci_high: float | None
    n: int
    """Judged attempts (errors and undetermined excluded)."""
    k: int


def wilson(k: int, n: int, z: float = Z_95) -> Rate:
    """Wilson score interval: well-behaved at 0, n and small n, unlike the normal approximation."""
    if n == 0:
        return Rate(value=None, ci_low=None, ci_high=None, n=0, k=0)
    low, high = wilson_interval(k / n, n, z)
    return Rate(value=k / n, ci_low=low, ci_high=high, n=n, k=k)


def wilson_interval(p: float, n: float, z: float = Z_95) -> tuple[float | None, float | None]:
    """The Wilson interval of a share p observed on n (n may be an effective, non-integer size)."""
    if n <= 0:
        return None, None
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percent(share: float | None, digits: int = 1, sign: str = "%") -> str:
    """A share (0–1) as a percentage, '12.5%' by default; '—' when there is none. The one percent formatter of the
    reports and the CLI."""
    return "—" if share is None else f"{100 * share:.{digits}f}{sign}"
