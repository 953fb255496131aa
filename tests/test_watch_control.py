"""Control limits on simulated traffic: known change points are found within the windows the module states,
a stable stream alarms no more often than stated, and a restart mid-stream changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from refcal.watch.control import Breach, Monitor, WindowCount, cusum_increment, upper_limit

CHANGE = 30
START = datetime(2025, 3, 1, tzinfo=UTC)


def windows(rates: list[float] | np.ndarray, n: int, seed: int, metric: str = "refusal") -> list[WindowCount]:
    """One simulated (metric, 'all') stream: window i holds n exchanges from minute i."""
    events = np.random.default_rng(seed).binomial(n, np.asarray(rates))
    return [WindowCount(metric=metric, segment="all", index=index, start=(START + timedelta(minutes=index)).isoformat(),
                        end=(START + timedelta(minutes=index, seconds=59)).isoformat(), events=int(count), n=n)
            for index, count in enumerate(events)]


def run(stream: list[WindowCount], monitor: Monitor | None = None) -> list[Breach]:
    monitor = monitor or Monitor(stream[0].metric, stream[0].segment)
    return [breach for window in stream for breach in monitor.update(window)]


def first_delay(breaches: list[Breach], rule: str | None = None) -> int | None:
    """Windows from the change point to the first breach after it (by the given rule, or any)."""
    after = [breach.index - CHANGE for breach in breaches
             if breach.index >= CHANGE and (rule is None or breach.rule == rule)]
    return min(after) if after else None


def test_a_surge_from_5_to_17_percent_is_caught_in_the_window_it_starts():
    streams = [run(windows([0.05] * CHANGE + [0.17] * 10, 500, seed)) for seed in range(200)]
    delays = [first_delay(breaches) for breaches in streams]
    assert sum(delay == 0 for delay in delays) >= 196  # stated: in the window where it starts
    for breaches, delay in zip(streams, delays, strict=True):
        if delay is None:  # both rules latched by a false alarm just before: that episode is still open
            assert {breach.rule for breach in breaches if CHANGE - 3 <= breach.index < CHANGE} == {"p-chart", "cusum"}
        else:
            assert delay <= 1


def test_a_step_from_5_to_8_percent_is_caught_within_the_stated_windows():
    delays = [first_delay(run(windows([0.05] * CHANGE + [0.08] * 30, 500, seed + 1000))) for seed in range(200)]
    assert all(delay is not None for delay in delays)
    assert np.percentile(delays, 90) <= 3 and max(delays) <= 10


def test_a_slow_ramp_is_caught_by_the_cusum_before_it_ends():
    ramp = [0.05] * CHANGE + list(np.linspace(0.05, 0.08, 21)[1:]) + [0.08] * 20
    delays = [first_delay(run(windows(ramp, 500, seed + 2000)), "cusum") for seed in range(200)]
    found = [delay for delay in delays if delay is not None]
    assert len(found) >= 195
    assert np.median(found) <= 13 and np.percentile(found, 90) <= 19


def test_the_cusum_catches_a_small_shift_faster_than_a_p_chart_with_as_few_false_alarms():
    # A 3.5-sigma p-chart alarms on 0.05 % of stable windows of 500, like the CUSUM's run length of 2,000.
    # 5 % -> 6.5 %: that p-chart's limit (8.4 %) is 3.4 standard errors above the new rate.
    delays: dict[str, list[int | None]] = {"p-chart": [], "cusum": []}
    for seed in range(100):
        monitor = Monitor("refusal", "all", p0=0.05, sigmas=3.5)
        breaches = run(windows([0.05] * CHANGE + [0.065] * 60, 500, seed + 3000), monitor)
        for rule, found in delays.items():
            found.append(first_delay(breaches, rule))
    cusum = [delay for delay in delays["cusum"] if delay is not None]
    p_chart = [delay if delay is not None else 60 for delay in delays["p-chart"]]
    assert len(cusum) == 100 and np.percentile(cusum, 90) <= 20
    assert 2 * np.median(cusum) <= np.median(p_chart)


@pytest.mark.parametrize(("known_baseline", "at_most_one_in", "cusum_at_most_one_in"),
                         [(True, 300, 2000), (False, 200, 1200)])
def test_a_stable_stream_alarms_no_more_than_stated(known_baseline, at_most_one_in, cusum_at_most_one_in):
    # Many streams, not one long one: an estimated baseline's error is shared by a whole stream.
    counts = {"p-chart": 0, "cusum": 0}
    monitored = 0
    for seed in range(400):
        monitor = Monitor("refusal", "all", p0=0.05 if known_baseline else None)
        for breach in run(windows(np.full(260, 0.05), 500, seed + 9000), monitor):
            counts[breach.rule] += 1
        monitored += 260 if known_baseline else 250
    assert sum(counts.values()) / monitored <= 1 / at_most_one_in
    assert counts["cusum"] / monitored <= 1 / cusum_at_most_one_in  # Wald: run length >= 2,000 when p0 is known
    assert counts["p-chart"] > 0  # the limit is 3 sigma, not infinity: the measurement measured something


def test_the_p_chart_limit_and_the_cusum_increment_follow_their_formulas():
    assert upper_limit(0.05, 500) == pytest.approx(0.05 + 3 * (0.05 * 0.95 / 500) ** 0.5)
    assert upper_limit(0.05, 100) > upper_limit(0.05, 500)  # a short window gets a wider limit
    assert cusum_increment(25, 500, 0.05, 0.075) < 0 < cusum_increment(40, 500, 0.05, 0.075)


def test_a_breach_carries_its_onset_so_the_time_to_detect_is_measurable():
    stream = windows([0.05] * CHANGE + [0.08] * 30, 500, 11)
    breaches = run(stream)
    cusum = next(breach for breach in breaches if breach.rule == "cusum" and breach.index >= CHANGE)
    assert cusum.onset_index <= cusum.index
    assert cusum.onset == stream[cusum.onset_index].start and cusum.detected_at == stream[cusum.index].end
    assert cusum.statistic is not None and cusum.threshold is not None and cusum.statistic > cusum.threshold
    assert abs(cusum.onset_index - CHANGE) <= 3
    p_chart = next(breach for breach in breaches if breach.rule == "p-chart" and breach.index >= CHANGE)
    assert (p_chart.onset_index, p_chart.onset) == (p_chart.index, stream[p_chart.index].start)
    assert p_chart.rate > p_chart.limit


def test_a_persistent_shift_raises_one_breach_per_rule_not_one_per_window():
    stream = windows([0.05] * CHANGE + [0.17] * 50, 500, 5)
    breaches = [breach for breach in run(stream) if breach.index >= CHANGE]
    assert sorted(breach.rule for breach in breaches) == ["cusum", "p-chart"]


def test_a_rule_re_arms_after_the_rate_returns():
    rates = [0.05] * CHANGE + [0.17] * 5 + [0.05] * 20 + [0.17] * 5
    breaches = run(windows(rates, 500, 6), Monitor("refusal", "all", p0=0.05))
    episodes = sorted({breach.index for breach in breaches if breach.rule == "p-chart" and breach.index >= CHANGE})
    assert episodes == [CHANGE, CHANGE + 25]


def test_a_restart_mid_stream_gives_the_same_breaches():
    stream = windows([0.05] * CHANGE + list(np.linspace(0.05, 0.1, 40)), 500, 7)
    whole = run(stream)
    assert whole
    for cut in (5, CHANGE, CHANGE + 7, CHANGE + 20):
        first = Monitor("refusal", "all")
        before = run(stream[:cut], first)
        saved = json.loads(json.dumps(first.state()))
        resumed = Monitor.from_state(saved)
        assert resumed.state() == first.state()
        assert before + run(stream[cut:], resumed) == whole


def test_a_replayed_window_is_ignored():
    stream = windows([0.05] * CHANGE + [0.17] * 3, 500, 8)
    monitor = Monitor("refusal", "all")
    breaches = run(stream, monitor)
    state = monitor.state()
    assert run(stream[-3:], monitor) == [] and monitor.state() == state
    assert breaches


def test_a_baseline_without_events_does_not_alarm_on_the_first_one():
    monitor = Monitor("likely_false_refusal", "all", baseline_windows=3)
    empty = windows([0.0] * 3, 500, 9, metric="likely_false_refusal")
    assert run(empty, monitor) == []
    assert monitor.p0 is not None and 0 < monitor.p0 < 0.001
    one = WindowCount(metric="likely_false_refusal", segment="all", index=3, start="a", end="b", events=1, n=500)
    assert monitor.update(one) == []


def test_windows_for_another_stream_or_impossible_counts_are_refused():
    monitor = Monitor("refusal", "all")
    with pytest.raises(ValueError, match="likely_false_refusal/all"):
        monitor.update(WindowCount(metric="likely_false_refusal", segment="all", index=0, start="a", end="b",
                                   events=1, n=5))
    with pytest.raises(ValueError, match="events 6"):
        monitor.update(WindowCount(metric="refusal", segment="all", index=0, start="a", end="b", events=6, n=5))
    with pytest.raises(ValueError, match="p0"):
        Monitor("refusal", "all", p0=0.0)


def test_the_chart_point_shows_the_limits_in_force():
    monitor = Monitor("refusal", "all", baseline_windows=2)
    stream = windows([0.05, 0.05, 0.3], 500, 10)
    baseline = monitor.observe(stream[0]).point
    assert baseline.centre is None and baseline.upper is None and baseline.rate == stream[0].events / 500
    monitor.observe(stream[1])
    point = monitor.observe(stream[2]).point
    assert point.centre == monitor.p0 and point.upper == upper_limit(monitor.p0, 500)
    assert set(point.rules) == {"p-chart", "cusum"}
