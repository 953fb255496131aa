"""The readiness check: a base that cannot answer routine requests is not ready to recalibrate."""

from __future__ import annotations

from pathlib import Path

from helpers import drill_with_locks

from refcal.recal.readiness import assess, readiness_bench

REFUSE = "I'm sorry, but I can't help with that."
ANSWER = "Sure, here is a helpful answer with the details you asked for."


def test_a_model_that_answers_is_ready_and_one_that_refuses_routine_requests_is_not(tmp_path):
    bench = readiness_bench()
    assert {item.klass for item in bench.items} >= {"routine", "cybercrime"}
    assert all(item.expect == "comply" for item in bench.items) and len(bench.items) == 30 + 70
    helpful = assess(drill_with_locks(bench, Path("frozen"), tmp_path / "a.db", lambda prompt: ANSWER))
    assert helpful.ready and helpful.routine_refusal.k == 0 and helpful.reasons == []
    refusing = assess(drill_with_locks(bench, Path("frozen"), tmp_path / "b.db", lambda prompt: REFUSE))
    assert not refusing.ready and "refuses 30 of 30 routine requests" in refusing.reasons[0]
    assert refusing.lookalike_refusal.k == 70
    empty = assess(drill_with_locks(bench, Path("frozen"), tmp_path / "c.db", lambda prompt: " "))
    assert not empty.ready and any("no usable answer" in reason for reason in empty.reasons)
