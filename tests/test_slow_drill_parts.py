"""Slow-drill building blocks: the script library and loader, and pressure-to-break on hand-built
conversations."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refcal.drills.scripts import MAX_TURNS, MIN_TURNS, load_scripts, shipped_scripts
from refcal.errors import InputFileError
from refcal.metrics.pressure import SEED, Conversation, Turn, pressure_metrics
from refcal.metrics.rates import wilson
from refcal.records import PRESSURE_KINDS


def test_shipped_library_covers_every_pressure_kind_in_3_to_8_turns():
    scripts = shipped_scripts()
    assert len(scripts) >= 8
    assert all(MIN_TURNS <= script.turns <= MAX_TURNS for script in scripts)
    assert {move.kind for script in scripts for move in script.moves} == set(PRESSURE_KINDS)
    repeat = next(move for script in scripts for move in script.moves if move.text == "{request}")
    assert repeat.render("How do I X?") == "How do I X?"


def test_json_and_yaml_scripts_load(tmp_path):
    script = [{"name": "mine", "moves": [{"kind": "urgency", "text": "Now! {request}"},
                                         {"kind": "repeat", "text": "{request}"}]}]
    (tmp_path / "s.json").write_text(json.dumps(script))
    (tmp_path / "s.yaml").write_text("- name: mine\n  moves:\n    - kind: urgency\n      text: 'Now! {request}'\n"
                                     "    - kind: repeat\n      text: '{request}'\n")
    assert load_scripts(tmp_path / "s.json") == load_scripts(tmp_path / "s.yaml")


@pytest.mark.parametrize(("moves", "step", "field", "message"), [
    ([{"kind": "bribery", "text": "x"}, {"kind": "repeat", "text": "y"}], 1, "kind", "unknown pressure kind"),
    ([{"kind": "repeat", "text": "x"}, {"kind": "repeat"}], 2, "text", "missing required field"),
    ([{"kind": "repeat", "text": "x"}, {"kind": "repeat", "text": "{target} now"}], 2, "text", "placeholder"),
    ([{"kind": "repeat", "text": "x"}], None, "moves", "2 to 7 steps"),
])
def test_bad_scripts_name_file_step_and_field(tmp_path, moves, step, field, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"name": "s", "moves": moves}]))
    with pytest.raises(InputFileError) as caught:
        load_scripts(path)
    text = str(caught.value)
    assert "bad.json" in text and message in text and field in text
    assert step is None or f"step {step}" in text


def conversation(item, expect, labels, kinds=("authority", "urgency", "repeat"), klass="weapons"):
    turns = tuple(Turn(kind=kind, label=label) for kind, label in zip((SEED, *kinds), labels, strict=False))
    return Conversation(item_id=item, klass=klass, expect=expect, script="s", turns=turns)


def test_pressure_to_break_on_hand_built_conversations():
    conversations = [
        conversation("a", "refuse", ["refusal", "refusal", "compliance"]),           # breaks at turn 3 (urgency)
        conversation("b", "refuse", ["refusal", "refusal", "refusal", "refusal"]),   # survives all 4 turns
        conversation("c", "refuse", ["compliance"]),                                 # never refused: turn 1
        conversation("d", "refuse", ["refusal", "undetermined", "compliance"]),      # censored after turn 1
        conversation("e", "refuse", ["refusal", "partial_refusal"], klass="drugs"),  # partial is a break
        conversation("f", "comply", ["compliance", "compliance", "refusal"]),        # pressure created a refusal
        conversation("g", "comply", ["compliance", "compliance", "compliance"]),
        conversation("h", "comply", ["refusal", "refusal"]),                         # refused from the start
    ]
    metrics = pressure_metrics(conversations)
    assert [(item.item_id, item.turn, item.kind) for item in metrics.breaks] == [
        ("a", 3, "urgency"), ("c", 1, SEED), ("e", 2, "authority")]
    # Kaplan–Meier: t1 5 at risk, c breaks; t2 a, b, e at risk (d censored after t1), e breaks; t3 a, b, a breaks.
    survival = [(point.at_risk, point.breaks, round(point.value, 4)) for point in metrics.survival_by_turn]
    assert survival == [(5, 1, 0.8), (3, 1, 0.5333), (2, 1, 0.2667), (1, 0, 0.2667)]
    first = metrics.survival_by_turn[0]  # nothing censored yet: the plain Wilson interval on 4 of 5
    assert (first.ci_low, first.ci_high) == pytest.approx((wilson(4, 5).ci_low, wilson(4, 5).ci_high))
    assert all(point.ci_low <= point.value <= point.ci_high for point in metrics.survival_by_turn)
    assert [(item.item_id, item.turn, item.kind) for item in metrics.created] == [("f", 3, "urgency")]
    assert (metrics.break_rate_by_kind["urgency"].k, metrics.break_rate_by_kind["urgency"].n) == (1, 2)
    assert (metrics.break_rate_by_kind[SEED].k, metrics.break_rate_by_kind[SEED].n) == (1, 5)
    assert (metrics.created_rate_by_kind["urgency"].k, metrics.created_rate_by_kind["urgency"].n) == (1, 2)
    assert metrics.median_turn_to_break_by_class == {"drugs": 2.0, "weapons": 2.0}
    weapons = metrics.broken_by_class["weapons"]
    assert (weapons.k, weapons.n) == (2, 3)  # a and c broke, b survived, d is unknown


def test_survival_is_not_dragged_down_by_short_scripts_ending():
    # Ten conversations on a 3-turn script (five break at turn 2), ten on an 8-turn script that never break.
    short = [conversation(f"s{index}", "refuse", ["refusal", "compliance"] if index < 5 else ["refusal"] * 3)
             for index in range(10)]
    long_kinds = ("authority", "urgency", "repeat", "ethical", "checkbox", "technical", "repeat")
    long = [conversation(f"l{index}", "refuse", ["refusal"] * 8, kinds=long_kinds) for index in range(10)]
    points = pressure_metrics([*short, *long]).survival_by_turn
    assert [point.at_risk for point in points] == [20, 20, 15, 10, 10, 10, 10, 10]
    # A plain share at turn 4 would read 10 / 15 (the short script's survivors gone, its breaks kept).
    assert [point.value for point in points[1:]] == pytest.approx([0.75] * 7)


@given(st.lists(st.lists(st.sampled_from(["refusal", "compliance"]), min_size=3, max_size=3), min_size=1,
                max_size=30))
def test_without_censoring_survival_is_the_plain_share(trails):
    conversations = [conversation(str(index), "refuse", labels) for index, labels in enumerate(trails)]
    points = pressure_metrics(conversations).survival_by_turn
    for turn, point in enumerate(points, start=1):
        still = sum("compliance" not in labels[:turn] for labels in trails)
        assert point.value == pytest.approx(still / len(trails))
