"""The power of a bench and the difference of two rates, against textbook cases; no_regression catches a
drop that overlapping Wilson intervals let through."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import refcal

from refcal.metrics.power import detectable_difference, items_needed, newcombe_difference, resolvable
from refcal.metrics.rates import wilson
from refcal.promote.gates import regressions_against, underpowered


def test_newcombe_reproduces_the_textbook_example():
    # Newcombe (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 vs 48/80, method 10.
    difference = newcombe_difference(56, 70, 48, 80)
    assert difference.value == pytest.approx(0.2)
    assert difference.low == pytest.approx(0.0524, abs=5e-4) and difference.high == pytest.approx(0.3339, abs=5e-4)
    assert newcombe_difference(1, 0, 1, 5) is None


def test_fleiss_sample_size_and_its_inverse():
    # Fleiss, Levin & Paik: 0.05 vs 0.10, two-sided α 0.05, power 0.8, no continuity correction: 435 per arm.
    assert items_needed(0.05, 0.10) == 435
    assert items_needed(0.3, 0.3) is None
    drop = detectable_difference(435, 0.10)
    assert drop == pytest.approx(0.05, abs=0.002)  # the inverse finds the same pair again
    assert detectable_difference(40, 0.26) > detectable_difference(400, 0.26)


def test_a_floor_gate_on_five_items_cannot_pass_for_a_reason():
    five = resolvable(5, 0.8, at_least=True)
    assert not five.can_pass and five.can_fail  # 5/5 has a Wilson lower bound of 0.57
    assert resolvable(40, 0.8, at_least=True).resolvable
    assert "5 items" in underpowered(5, ">=", 0.8) and underpowered(40, ">=", 0.8) is None


def receipt(refused: tuple[int, int], false: tuple[int, int], classes: dict[str, tuple[int, int]]):
    """The parts of a receipt that no_regression reads."""
    def metrics(refusal, false_refusal):
        return SimpleNamespace(refusal_rate=wilson(*refusal), false_refusal_rate=wilson(*false_refusal))
    per_class = {name: metrics(counts, (0, 10)) for name, counts in classes.items()}
    return SimpleNamespace(bench=SimpleNamespace(digest="sha256:same"),
                           metrics=SimpleNamespace(per_class=per_class, **vars(metrics(refused, false))))


def test_no_regression_catches_ten_of_39_falling_to_two_of_40():
    # Wilson intervals [0.15, 0.41] and [0.01, 0.17] overlap, so the old interval check passed this drop.
    before = receipt((10, 39), (2, 40), {"a": (5, 20), "b": (5, 19)})
    after = receipt((2, 40), (2, 40), {"a": (1, 20), "b": (1, 20)})
    low, high = wilson(10, 39).ci_low, wilson(2, 40).ci_high
    assert low < high
    _, problems = regressions_against(after, before)
    assert problems and problems[0].startswith("largest regression: overall refusal_rate: 10/39 → 2/40")
    # per class at α/2 (Bonferroni) 5/20 → 1/20 is not shown: only the overall drop is named
    assert not any(problem.startswith(("a ", "b ")) for problem in problems)
    _, none = regressions_against(before, before)
    assert none == []


def test_a_rise_in_false_refusal_is_a_regression_and_a_small_wobble_is_not():
    before = receipt((30, 40), (2, 40), {})
    assert regressions_against(receipt((30, 40), (14, 40), {}), before)[1]
    assert regressions_against(receipt((28, 40), (4, 40), {}), before)[1] == []


def test_bench_power_says_what_the_curveball_cannot_decide():
    curveball = Path(__file__).parents[1] / "benchmarks" / "data" / "curveball-1.jsonl"
    result = refcal("bench", "power", str(curveball), "--delta", "0.1", env={**os.environ, "COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 5}
    assert "yes" in lines["overall"] and "40" in lines["overall"]
    assert "cannot pass" in lines["fiction_frame"] and "none" in lines["fiction_frame"]  # 5 items per side
    bad = refcal("bench", "power", "no-such-bench.jsonl")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
