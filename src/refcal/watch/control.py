"""Control charts for refusal rates in live traffic: a binomial p-chart for sudden shifts and a binomial
CUSUM for slow drift, one `Monitor` per (metric, segment). Pure: windows in, breaches out, no I/O.

Both rules watch the upper side only. The watch exists to catch a model that starts refusing too much
(false refusals after a guardrail update); a fall in the refusal rate of live traffic is mostly a change in
the traffic mix, with no ground truth to tell, and the harmful side of a fall (a model that stops refusing what
it must) is what the drills' refusal floor on must-refuse benches measures. A lower limit would page people
for cheaper traffic.

The baseline rate p0 is the pooled rate of the first `baseline_windows` windows (default 10), or given.

**p-chart.** A window of n exchanges with k events breaches when k/n > p0 + 3·sqrt(p0(1-p0)/n) (the window's
own n, so short windows get wider limits). In control, one window in about 370 (n = 500, p0 = 5 %: the exact
binomial tail is 0.27 %) to one in 230 (n = 100: 0.43 %) exceeds it; the binomial's right skew at small p makes
that a little more often than the normal 0.135 %.

**CUSUM.** The log-likelihood-ratio CUSUM for a binomial shift from p0 to p1 = `cusum_shift`·p0 (default 1.5):
S ← max(0, S + k·ln(p1/p0) + (n−k)·ln((1−p1)/(1−p0))), breach when S > h. Because the increments are
likelihood ratios, Wald's bound gives an in-control average run length ≥ e^h whatever n and p0 are, so
h = ln(`cusum_arl`) (default 2,000 windows, h ≈ 7.6) states the false-alarm rate directly. Its onset is the
first window of the current excursion (the window after S last stood at 0): the usual change-point estimate.

**Stated figures** (measured in tests/test_watch_control.py on seeded simulated streams, p0 estimated from the
10 baseline windows as in production):
- in control (p0 = 5 %, windows of 500): with p0 known, about one false alarm per 360 windows (the p-chart's
  0.27 %; the CUSUM fewer than one in 10,000, well inside Wald's bound); with p0 estimated from 10 windows, the
  error of the estimate raises that to about one per 230 (the CUSUM one per 1,700). Windows of 100: one per
  130. More `baseline_windows` bring the estimated case towards the known one; raise `sigmas` to trade delay
  for quiet. Each (metric, segment) monitor alarms on its own, so many segments alarm more often between them;
- a step from 5 % to 17 % (a 12-point surge) is detected in the window where it starts;
- a step from 5 % to 8 % in windows of 500 is detected within 3 windows in 90 % of streams (8 at most);
- a slow ramp from 5 % to 8 % over 20 windows of 500 is detected by the CUSUM about 12 windows after it
  starts (18 in 90 % of streams), i.e. once the rate has crept past about 6.8 %; the 3-sigma p-chart finds it
  about as soon, at seven times the CUSUM's false-alarm rate. Against a p-chart as quiet as the CUSUM
  (3.5 sigma), a step from 5 % to 6.5 % takes the CUSUM half as many windows (median 7, 90 % within 17).
A rule latched by a false alarm just before a real change stays silent for that change (the other rule, or
the ledger's still-open entry, carries it).

**After a breach** each rule latches: it emits one breach per episode, not one per window. The CUSUM restarts
from 0 whenever it crosses h (so it does not climb for ever during a long episode and fall for ever after);
a latched rule re-arms after `rearm_windows` (default 3) consecutive in-control windows (p-chart: rate within
the limit; CUSUM: S back at 0). The drift ledger keeps one open entry per metric and segment anyway.

Windows are processed once: a window whose index is not above the last one seen is ignored, so a replay after
a restart cannot double-count. `state()`/`from_state()` round-trip exactly through JSON.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel

Rule = Literal["p-chart", "ewma", "cusum"]
METRICS = ("refusal", "likely_false_refusal")
STATE_VERSION = 1


class WindowCount(BaseModel):
    """Events among the exchanges of one window of one segment, as the sweep counts them."""

    metric: str
    """'refusal' or 'likely_false_refusal' (other names are accepted and watched the same way)."""
    segment: str
    """'all', or a refusal class or route name."""
    index: int
    """Position of the window in its (metric, segment) stream, from 0."""
    start: str
    """ISO time of the window's first exchange."""
    end: str
    """ISO time of the window's last exchange: the earliest moment a breach in it can be known."""
    events: int
    n: int


class Breach(BaseModel):
    """A window where a rule found the rate above its baseline's limit."""

    metric: str
    segment: str
    index: int
    """The window that tripped the rule."""
    rule: Rule
    rate: float
    """The tripping window's rate."""
    baseline: float
    """p0."""
    limit: float
    """The p-chart's upper limit for this window's n (for the CUSUM too, as the reference for 'back within')."""
    onset_index: int
    """Estimated first window of the change: the breach window (p-chart) or the CUSUM run's start."""
    onset: str
    """Start time of the onset window."""
    detected_at: str
    """End time of the breach window."""
    statistic: float | None = None
    """The CUSUM sum at the breach (None for the p-chart)."""
    threshold: float | None = None
    """The CUSUM's h (None for the p-chart)."""


class ChartPoint(BaseModel):
    """One window as a control chart draws it: the rate, the centre line and the limit in force."""

    metric: str
    segment: str
    index: int
    start: str
    end: str
    events: int
    n: int
    rate: float | None
    """None for an empty window."""
    centre: float | None
    """p0; None while the baseline is still being gathered."""
    upper: float | None
    """The p-chart upper limit for this window's n; None during the baseline."""
    cusum: float | None
    """The CUSUM sum after this window; None during the baseline."""
    rules: list[str] = []
    """Rules that breached (emitted a breach) in this window."""


class Observation(BaseModel):
    point: ChartPoint
    breaches: list[Breach]


def upper_limit(p0: float, n: int, sigmas: float = 3.0) -> float:
    """The p-chart's upper control limit for a window of n exchanges (capped at 1)."""
    return min(1.0, p0 + sigmas * math.sqrt(p0 * (1 - p0) / n))


def cusum_increment(events: int, n: int, p0: float, p1: float) -> float:
    """The binomial log-likelihood ratio of p1 over p0 for k events in n."""
    return events * math.log(p1 / p0) + (n - events) * math.log((1 - p1) / (1 - p0))


class Monitor:
    """Control limits for one (metric, segment) stream of windows; see the module docstring for the rules.

    Args:
        metric, segment: what this monitor watches; windows for another stream are refused.
        baseline_windows: windows pooled into p0 when `p0` is not given.
        p0: a known baseline rate (0 < p0 < 1); skips the baseline phase.
        sigmas: the p-chart's width in standard errors.
        cusum_shift: the CUSUM's designed-for shift as a factor on p0.
        cusum_arl: the CUSUM's in-control average run length in windows; h = ln(cusum_arl).
        rearm_windows: consecutive in-control windows before a latched rule may breach again.
    """

    def __init__(self, metric: str, segment: str, baseline_windows: int = 10, p0: float | None = None, *,
                 sigmas: float = 3.0, cusum_shift: float = 1.5, cusum_arl: float = 2000.0,
                 rearm_windows: int = 3) -> None:
        if p0 is not None and not 0 < p0 < 1:
            raise ValueError(f"p0 must be strictly between 0 and 1, got {p0}")
        if baseline_windows < 1 or rearm_windows < 1 or cusum_shift <= 1 or cusum_arl <= 1 or sigmas <= 0:
            raise ValueError("baseline_windows and rearm_windows must be >= 1, cusum_shift and cusum_arl > 1, "
                             "sigmas > 0")
        self.metric, self.segment = metric, segment
        self.baseline_windows, self.sigmas = baseline_windows, sigmas
        self.cusum_shift, self.cusum_arl, self.rearm_windows = cusum_shift, cusum_arl, rearm_windows
        self.p0: float | None = p0
        self.baseline_events = 0
        self.baseline_n = 0
        self.baseline_seen = 0
        self.last_index = -1
        self.cusum = 0.0
        self.run_start_index: int | None = None
        self.run_start: str | None = None
        self.latched: dict[str, bool] = {"p-chart": False, "cusum": False}
        self.in_control_streak: dict[str, int] = {"p-chart": 0, "cusum": 0}

    @property
    def threshold(self) -> float:
        """The CUSUM's decision interval h."""
        return math.log(self.cusum_arl)

    @property
    def p1(self) -> float | None:
        """The CUSUM's out-of-control rate, kept below 1."""
        if self.p0 is None:
            return None
        return min(self.cusum_shift * self.p0, (1 + self.p0) / 2)

    def update(self, window: WindowCount) -> list[Breach]:
        """Feed one window; the breaches it raises (none during the baseline, for a replayed or empty window)."""
        return self.observe(window).breaches

    def observe(self, window: WindowCount) -> Observation:
        """Feed one window; its chart point and breaches. A window already seen (index not above the last)
        changes nothing and raises nothing."""
        if (window.metric, window.segment) != (self.metric, self.segment):
            raise ValueError(f"window for {window.metric}/{window.segment} fed to the monitor of "
                             f"{self.metric}/{self.segment}")
        if window.events < 0 or window.n < 0 or window.events > window.n:
            raise ValueError(f"window {window.index} of {self.metric}/{self.segment}: events {window.events} "
                             f"out of range for n {window.n}")
        if window.index <= self.last_index:
            return Observation(point=self._point(window), breaches=[])
        self.last_index = window.index
        if window.n == 0:
            return Observation(point=self._point(window), breaches=[])
        if self.p0 is None:
            self._gather_baseline(window)
            return Observation(point=self._point(window), breaches=[])
        breaches = [breach for breach in (self._p_chart(window), self._cusum(window)) if breach is not None]
        point = self._point(window)
        point.rules = [breach.rule for breach in breaches]
        return Observation(point=point, breaches=breaches)

    def _gather_baseline(self, window: WindowCount) -> None:
        self.baseline_events += window.events
        self.baseline_n += window.n
        self.baseline_seen += 1
        if self.baseline_seen >= self.baseline_windows:
            self.p0 = _bounded_rate(self.baseline_events, self.baseline_n)

    def _p_chart(self, window: WindowCount) -> Breach | None:
        assert self.p0 is not None
        rate, limit = window.events / window.n, upper_limit(self.p0, window.n, self.sigmas)
        if rate <= limit:
            self._in_control("p-chart")
            return None
        self.in_control_streak["p-chart"] = 0
        if self.latched["p-chart"]:
            return None
        self.latched["p-chart"] = True
        return self._breach(window, "p-chart", window.index, window.start)

    def _cusum(self, window: WindowCount) -> Breach | None:
        assert self.p0 is not None and self.p1 is not None
        if self.cusum == 0.0:
            self.run_start_index, self.run_start = window.index, window.start
        self.cusum = max(0.0, self.cusum + cusum_increment(window.events, window.n, self.p0, self.p1))
        if self.cusum == 0.0:
            self.run_start_index = self.run_start = None
            self._in_control("cusum")
            return None
        self.in_control_streak["cusum"] = 0
        if self.cusum <= self.threshold:
            return None
        statistic, onset_index, onset = self.cusum, self.run_start_index, self.run_start
        self.cusum, self.run_start_index, self.run_start = 0.0, None, None
        if self.latched["cusum"]:
            return None
        self.latched["cusum"] = True
        assert onset_index is not None and onset is not None
        return self._breach(window, "cusum", onset_index, onset, statistic)

    def _in_control(self, rule: str) -> None:
        self.in_control_streak[rule] += 1
        if self.in_control_streak[rule] >= self.rearm_windows:
            self.latched[rule] = False

    def _breach(self, window: WindowCount, rule: Rule, onset_index: int, onset: str,
                statistic: float | None = None) -> Breach:
        assert self.p0 is not None
        return Breach(metric=self.metric, segment=self.segment, index=window.index, rule=rule,
                      rate=window.events / window.n, baseline=self.p0,
                      limit=upper_limit(self.p0, window.n, self.sigmas), onset_index=onset_index, onset=onset,
                      detected_at=window.end, statistic=statistic,
                      threshold=self.threshold if rule == "cusum" else None)

    def _point(self, window: WindowCount) -> ChartPoint:
        ready = self.p0 is not None
        return ChartPoint(metric=window.metric, segment=window.segment, index=window.index, start=window.start,
                          end=window.end, events=window.events, n=window.n,
                          rate=window.events / window.n if window.n else None,
                          centre=self.p0 if ready else None,
                          upper=upper_limit(self.p0, window.n, self.sigmas) if self.p0 is not None and window.n
                          else None,
                          cusum=self.cusum if ready else None)

    def state(self) -> dict[str, Any]:
        """Everything needed to continue the stream after a restart; JSON-serialisable."""
        return {
            "version": STATE_VERSION, "metric": self.metric, "segment": self.segment,
            "baseline_windows": self.baseline_windows, "sigmas": self.sigmas, "cusum_shift": self.cusum_shift,
            "cusum_arl": self.cusum_arl, "rearm_windows": self.rearm_windows, "p0": self.p0,
            "baseline_events": self.baseline_events, "baseline_n": self.baseline_n,
            "baseline_seen": self.baseline_seen, "last_index": self.last_index, "cusum": self.cusum,
            "run_start_index": self.run_start_index, "run_start": self.run_start,
            "latched": dict(self.latched), "in_control_streak": dict(self.in_control_streak),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Monitor:
        """The monitor `state()` described, continuing exactly where it stopped."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"monitor state version {state.get('version')!r} is not {STATE_VERSION}")
        monitor = cls(state["metric"], state["segment"], baseline_windows=state["baseline_windows"],
                      sigmas=state["sigmas"], cusum_shift=state["cusum_shift"], cusum_arl=state["cusum_arl"],
                      rearm_windows=state["rearm_windows"])
        monitor.p0 = state["p0"]
        for name in ("baseline_events", "baseline_n", "baseline_seen", "last_index", "cusum", "run_start_index",
                     "run_start"):
            setattr(monitor, name, state[name])
        monitor.latched = dict(state["latched"])
        monitor.in_control_streak = dict(state["in_control_streak"])
        return monitor


def _bounded_rate(events: int, n: int) -> float:
    """The pooled baseline rate, kept off 0 and 1 by half an event: a baseline with no refusals at all would
    otherwise put the limit at 0 and alarm on the first one."""
    return min(max(events, 0.5), n - 0.5) / n
