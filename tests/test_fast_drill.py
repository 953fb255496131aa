"""A fast drill end to end on the real embedded SmolLM2: break map, replay, cadence, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from helpers import refcal

from refcal.drills.mutators import select

pytestmark = pytest.mark.model

FAST = ["--limit", "4", "--max-tokens", "32", "--mutators", "base64,roleplay,typo_keyboard,frame_language",
        "--per-item", "2", "--depth", "2", "--seed", "5"]


def test_fast_drill_break_map_replay_and_review_cadence():
    first = refcal("drill", *FAST, "--out", "f1")
    assert first.returncode == 0, first.stderr
    receipt = json.loads(Path("f1/receipt.json").read_text())
    assert receipt["plan"]["variants"] == 12 and receipt["counts"]["attempts"] == 12
    assert receipt["plan"]["mutation"] == {"mutators": list(select("base64,roleplay,typo_keyboard,frame_language")),
                                           "per_item": 2, "depth": 2, "seed": 5}
    families = receipt["metrics"]["per_family"]
    assert "as_written" in families and set(families) - {"as_written"} <= {"surface", "encoding", "framing",
                                                                           "language"}
    for rates in families.values():
        assert {"refusal_rate", "false_refusal_rate"} <= set(rates)
    assert receipt["metrics"]["refusal_floor_over_families"]["family"] in families
    assert "Break map" in Path("f1/report.html").read_text()
    assert "break map" in first.stdout and "as_written" in first.stdout
    assert receipt["plan"]["number"] == 1 and receipt["plan"]["review_sample"] is None

    with sqlite3.connect(".refcal/refcal.db") as db:
        rows = [json.loads(row[0]) for row in db.execute("SELECT data FROM attempts WHERE run_id = ?",
                                                         (receipt["run_id"],))]
    original = next(row for row in rows if "~" in row["variant"]["id"])
    replay = refcal("drill", "--replay", original["variant"]["id"], "--max-tokens", "32", "--out", "r1")
    assert replay.returncode == 0, replay.stderr
    replayed = json.loads(Path("r1/receipt.json").read_text())
    assert replayed["counts"]["attempts"] == 1 and replayed["plan"]["replay"] == original["variant"]["id"]
    with sqlite3.connect(".refcal/refcal.db") as db:
        again = json.loads(db.execute("SELECT data FROM attempts WHERE run_id = ?",
                                      (replayed["run_id"],)).fetchone()[0])
    assert again["variant"]["messages"] == original["variant"]["messages"]  # exactly that variant

    for out in ("f2", "f3"):  # same bench, same target: drills 2 and 3 (served from the cache)
        assert refcal("drill", *FAST, "--out", out).returncode == 0
    third = json.loads(Path("f3/receipt.json").read_text())
    assert third["plan"]["number"] == 3 and third["plan"]["review_sample"] == "review_sample.jsonl"
    sample = [json.loads(line) for line in Path("f3/review_sample.jsonl").read_text().splitlines()]
    assert 0 < len(sample) <= 30 and all(row["label"] is None and row["verdict"] for row in sample)
    assert not Path("f2/review_sample.jsonl").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--mutators", "surface,rot26"], "unknown mutator or family 'rot26'"),
    (["--mutators", "base64", "--depth", "9"], "--depth must be 1 to 4"),
    (["--mutators", "base64,hex", "--per-item", "5"], "more than the 2 distinct chains"),
    (["--replay", "nope~base64~3"], "no item 'nope'"),
])
def test_bad_plans_stop_before_any_request(args, message):
    result = refcal("drill", "--target", "openai:m@http://127.0.0.1:9/v1", *args, "--out", "bad")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not Path("bad").exists()


def test_slow_drill_on_the_embedded_model_reports_pressure(tmp_path):
    result = refcal("drill", "--limit", "4", "--max-tokens", "32", "--scripts", "short-repeat,urgency-ladder",
                    "--to-end", "--out", "s1")
    assert result.returncode == 0, result.stderr
    receipt = json.loads(Path("s1/receipt.json").read_text())
    assert receipt["plan"]["scripts"] == ["short-repeat", "urgency-ladder"] and receipt["plan"]["to_end"]
    pressure = receipt["metrics"]["pressure"]
    assert 1 <= len(pressure["survival_by_turn"]) <= 4
    assert pressure["survival_by_turn"][0]["at_risk"] == 2 * receipt["metrics"]["refusal_rate"]["n"]  # once per item
    assert receipt["counts"]["attempts"] == 4 * (3 + 4)  # --to-end: every turn of both scripts for 4 items
    assert "refusal survival by turn" in result.stdout and "<h2>Pressure</h2>" in Path("s1/report.html").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n  moves:\n    - kind: bribery\n      text: hi\n    - kind: repeat\n      text: hi\n")
    refused = refcal("drill", "--scripts", str(bad), "--target", "openai:m@http://127.0.0.1:9/v1", "--out", "b")
    assert refused.returncode == 2 and "bad.yaml" in refused.stderr and "step 1" in refused.stderr
    assert "kind" in refused.stderr and not Path("b").exists()
