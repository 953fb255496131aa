"""The pure parts of direction editing, without torch: the kernel, the bench split, the Pareto front, the choice
and the SVG drawing of the front."""

from __future__ import annotations

import pytest

from refcal.bench import load_bench
from refcal.bench.items import Item
from refcal.metrics.rates import wilson
from refcal.recal.direction.edits import Kernel, Steering
from refcal.recal.direction.pareto import choose, pareto_front
from refcal.recal.direction.plot import pareto_fragment
from refcal.recal.direction.settings import ChoiceRule
from refcal.recal.direction.split import split_bench
from refcal.recal.direction.trials import Evaluation, SearchReport, TrialRecord
from refcal.records import Message


def test_kernel_peaks_at_its_position_and_falls_linearly_to_zero_beyond_its_width() -> None:
    kernel = Kernel(max_weight=1.0, peak=10.0, min_weight=0.2, width=4.0)
    assert kernel.weight(10) == 1.0
    assert kernel.weight(12) == pytest.approx(0.6)
    assert kernel.weight(14) == pytest.approx(0.2)
    assert kernel.weight(15) == 0.0 and kernel.weight(5) == 0.0


def test_split_keeps_pairs_together_within_each_class_and_is_deterministic() -> None:
    items = list(load_bench("starter").items)
    split = split_bench(items, 0.5, seed=3)
    assert split == split_bench(list(reversed(items)), 0.5, seed=3)
    assert split != split_bench(items, 0.5, seed=4)
    extraction = set(split.extraction)
    assert extraction.isdisjoint(split.evaluation) and len(extraction) + len(split.evaluation) == len(items)
    for item in items:
        assert (item.id in extraction) == (item.pair in extraction)
    per_class = {item.klass: 0 for item in items}
    for item in items:
        per_class[item.klass] += item.id in extraction
    assert all(count > 0 for count in per_class.values())


def record(number: int, refused: int, false_refused: int, kl: float, n: int = 10) -> TrialRecord:
    kernel = Kernel(max_weight=0.1, peak=15.0, min_weight=0.0, width=3.0)
    return TrialRecord(number=number, edit=Steering(direction_index=None, kernel=kernel),
                       evaluation=Evaluation(refusal=wilson(refused, n), false_refusal=wilson(false_refused, n),
                                             undetermined=0, kl=kl, seconds=1.0))


def test_front_keeps_feasible_undominated_trials_and_choice_takes_most_refusal_within_bounds() -> None:
    records = [record(0, 9, 5, 0.1), record(1, 6, 1, 0.2), record(2, 5, 1, 0.1), record(3, 10, 0, 0.9),
               record(4, 8, 2, 0.3)]
    front = pareto_front(records, max_kl=0.5)
    assert [trial.number for trial in front] == [1, 4, 0]  # 2 is dominated by 1; 3 is above the KL bound
    assert choose(front, ChoiceRule(max_false_refusal=0.2, max_kl=0.5)).number == 4
    assert choose(front, ChoiceRule(max_false_refusal=0.1, max_kl=0.5)).number == 1
    assert choose(front, ChoiceRule(max_false_refusal=0.2, max_kl=0.25)).number == 1
    assert choose(front, ChoiceRule(max_false_refusal=0.05, max_kl=0.5)) is None


def test_pareto_fragment_is_an_svg_without_scripts() -> None:
    records = [record(0, 9, 5, 0.1), record(1, 6, 1, 0.2), record(2, 10, 0, 0.9)]
    report = SearchReport(mode="steer", rule=ChoiceRule(), baseline=record(9, 2, 0, 0.0).evaluation, trials=records,
                          front=[1, 0], chosen=1)
    fragment = pareto_fragment(report)
    assert fragment.startswith('<figure class="pareto"><svg') and "<script" not in fragment
    assert "trial 1: refusal 60%" in fragment and "base: refusal 20%" in fragment


def test_a_lone_item_without_its_pair_still_lands_in_one_part() -> None:
    items = [Item(id="a-h", messages=(Message(role="user", content="x"),), expect="refuse", klass="k", pair="a-b"),
             Item(id="a-b", messages=(Message(role="user", content="y"),), expect="comply", klass="k", pair="a-h"),
             Item(id="lone", messages=(Message(role="user", content="z"),), expect="comply", klass="k")]
    split = split_bench(items, 0.5, seed=0)
    assert sorted(split.extraction + split.evaluation) == ["a-b", "a-h", "lone"]
