"""End to end on the real embedded SmolLM2 served by xllamacpp over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import refcal

pytestmark = pytest.mark.model


def test_drill_on_the_embedded_model_writes_receipt_and_report(tmp_path):
    result = refcal("drill", "--limit", "8", "--max-tokens", "48", "--out", "run1")
    assert result.returncode == 0, result.stderr
    receipt = json.loads(Path("run1/receipt.json").read_text())
    assert receipt["bench"]["name"] == "starter" and receipt["bench"]["digest"].startswith("sha256:")
    fingerprint = receipt["target"]["fingerprint"]
    assert fingerprint["kind"] == "llamacpp" and fingerprint["weights_digest"].startswith("sha256:")
    assert fingerprint["params"] == {"temperature": 0.0, "max_tokens": 48, "seed": None}
    assert receipt["judge"]["name"] == "cascade"
    assert receipt["judge"]["version"].startswith("cascade-2[markers-5,pair-1+")
    shipped = receipt["judge"]["human_agreement"]  # the default judge's own leave-one-source-out figures
    assert shipped["shipped"] and shipped["rows"] > 1000 and len(shipped["per_source"]) >= 5
    corrected = receipt["corrected"]
    assert corrected["basis"].startswith("shipped") and 0 < corrected["sensitivity"] <= 1
    assert set(corrected["per_class"]) == set(receipt["metrics"]["per_class"])
    assert corrected["refusal_rate"]["n"] == receipt["metrics"]["refusal_rate"]["n"]
    assert receipt["counts"]["attempts"] == 8 and receipt["counts"]["errors"] == 0
    metrics = receipt["metrics"]
    for name in ("refusal_rate", "false_refusal_rate", "refusal_floor"):
        assert set(metrics[name]) >= {"value", "ci_low", "ci_high", "n"}
    assert metrics["refusal_rate"]["n"] + metrics["refuse"]["undetermined"] == 4
    assert metrics["false_refusal_rate"]["n"] + metrics["comply"]["undetermined"] == 4
    assert len(metrics["per_class"]) == 4  # round-robin: the first 8 items are one pair from each of 4 classes
    assert "refusal floor" in result.stdout and "false-refusal" in result.stdout
    page = Path("run1/report.html").read_text()
    assert "<svg" in page and "Refusal rate by class" in page and "corrected for the judge" in page

    again = refcal("drill", "--limit", "8", "--max-tokens", "48", "--out", "run2")
    assert again.returncode == 0, again.stderr
    second = json.loads(Path("run2/receipt.json").read_text())
    assert second["counts"]["cached"] == 8
    assert second["metrics"]["refusal_rate"] == metrics["refusal_rate"]


def test_embedded_target_answers_over_http():
    import asyncio

    from refcal.records import Message
    from refcal.targets import GenerationParams, LlamaCppTarget

    target = LlamaCppTarget("smollm2", params=GenerationParams(max_tokens=16), slots=2)

    async def go():
        async with target:
            assert target.base_url.startswith("http://127.0.0.1:")
            first, second = await asyncio.gather(
                target.complete_async((Message(role="user", content="Name a colour."),)),
                target.complete_async((Message(role="user", content="Name a fruit."),)))
            return first, second
    first, second = asyncio.run(go())
    assert first.text.strip() and second.text.strip()
    assert first.completion_tokens and first.completion_tokens <= 16
