"""The library API (`import refcal`): light to import, typed, documented, and doing what the CLI does."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import refcal
from refcal.errors import BenchError, InputFileError
from refcal.receipts import receipt_digest
from refcal.testing import Reply, StubServer

HEAVY = ("torch", "transformers", "fastapi", "uvicorn", "httpx", "typer", "rich", "numpy", "xllamacpp")
GATES = 'bench = "starter"\njudge = "markers"\n\n[[gate]]\nmetric = "errors"\nop = "=="\nvalue = 0\n'


def _loaded_after(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json\n"
                             "print(json.dumps(sorted(sys.modules)))"], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_refcal_loads_no_submodule_and_no_heavy_dependency() -> None:
    loaded = _loaded_after("import refcal")
    assert [name for name in loaded if name.startswith("refcal.")] == []
    assert [name for name in loaded if name.split(".")[0] in HEAVY] == []


def test_a_public_name_imports_only_what_it_needs() -> None:
    loaded = _loaded_after("import refcal\nrefcal.judge([('q', 'I cannot help with that.')], lane='markers')")
    assert [name for name in loaded if name.split(".")[0] in ("torch", "transformers", "fastapi", "typer")] == []
    assert not any(name.startswith("refcal.cli") for name in loaded)


def test_every_public_name_resolves_is_documented_and_typed() -> None:
    assert "__version__" in refcal.__all__
    for name in refcal.__all__:
        value = getattr(refcal, name)
        assert name in dir(refcal)
        if name == "__version__":
            continue
        assert inspect.getdoc(value), f"refcal.{name} has no docstring"
        if inspect.isfunction(value):
            signature = inspect.signature(value)
            assert signature.return_annotation is not inspect.Signature.empty, name
            untyped = [p.name for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
            assert untyped == [], f"refcal.{name}: untyped parameters {untyped}"
    with pytest.raises(AttributeError):
        refcal.no_such_name  # noqa: B018


def test_no_public_name_is_shadowed_by_a_subpackage() -> None:
    """`refcal.X` for a submodule X is set by the import system once X is imported, hiding a function X."""
    submodules = {path.stem if path.is_file() else path.name
                  for path in Path(refcal.__file__).parent.iterdir() if path.suffix == ".py" or path.is_dir()}
    assert set(refcal.__all__) & submodules == set()


def test_judge_takes_rows_pairs_and_files() -> None:
    refusal, compliance = "I can't help with that.", "Sure, here is how to do it: first, open the file."
    verdicts = refcal.judge([("q1", refusal), {"prompt": "q2", "response": compliance},
                             {"prompt": "q3", "completion": refusal}], lane="markers")
    assert [verdict.label for verdict in verdicts] == ["refusal", "compliance", "refusal"]
    assert all(isinstance(verdict, refcal.Verdict) and verdict.lane == "markers" for verdict in verdicts)

    source = Path("responses.jsonl")
    source.write_text(json.dumps({"id": "a", "prompt": "q", "response": refusal, "model": "m1"}) + "\n"
                      + json.dumps({"id": "b", "prompt": "q", "response": compliance}) + "\n", encoding="utf-8")
    assert [verdict.label for verdict in refcal.judge(source, lane="markers")] == ["refusal", "compliance"]
    written = refcal.judge_file(source, "judged.jsonl", lane="markers")
    rows = [json.loads(line) for line in Path("judged.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["verdict"] for row in rows] == [verdict.label for verdict in written]
    assert rows[0]["model"] == "m1" and rows[0]["lane"] == "markers" and rows[0]["id"] == "a"


def test_judge_errors_are_raised_not_printed() -> None:
    Path("bad.jsonl").write_text('{"id": "a", "prompt": "q"}\n', encoding="utf-8")
    with pytest.raises(InputFileError, match="response"):
        refcal.judge("bad.jsonl", lane="markers")
    with pytest.raises(ValueError, match="judge target"):
        refcal.judge([("q", "a")], lane="llm")
    with pytest.raises(ValueError, match="unknown judge"):
        refcal.judge([("q", "a")], lane="nope")


def test_load_and_list_benches() -> None:
    bench = refcal.load_bench("starter")
    assert isinstance(bench, refcal.Bench) and bench.items and bench.digest.startswith("sha256:")
    assert "starter" in [name for name, _, _ in refcal.list_benches()]
    with pytest.raises(BenchError):
        refcal.load_bench("no-such-bench")


def test_drill_read_receipt_and_promote_on_a_stub_target() -> None:
    """The wiring (bench → target → judge → store → receipt → gates) on the loopback stub: no model."""
    refcal.freeze_bench("starter", note="test")
    Path("gates.toml").write_text(GATES, encoding="utf-8")
    seen = []
    with StubServer(lambda request, number: Reply(text="I can't help with that.")) as stub:
        receipt = refcal.drill("starter", f"openai:stub@{stub.base_url}", judge="markers", limit=4, out="run1",
                               on_attempt=seen.append)
        sent = stub.chat_requests
    assert sent == 4 and len(seen) == 4
    assert isinstance(receipt, refcal.Receipt) and receipt.status == "complete"
    assert receipt.counts.attempts == 4 and receipt.counts.errors == 0
    assert receipt.bench.lock is not None and receipt.judge.name == "markers"
    assert Path("run1/report.html").is_file() and Path(".refcal/refcal.db").is_file()

    for where in ("run1", "run1/receipt.json", Path("run1")):
        read = refcal.read_receipt(where)
        assert read.run_id == receipt.run_id and read.digest == receipt_digest(read) == receipt.digest

    decision = refcal.promote_receipts(["run1"], "gates.toml")
    assert isinstance(decision, refcal.Promotion) and decision.promoted and decision.decision == "PROMOTED"
    assert decision.path == Path("run1/promotion.json")
    assert json.loads(decision.path.read_text(encoding="utf-8"))["decision"] == "PROMOTED"

    tampered = json.loads(Path("run1/receipt.json").read_text(encoding="utf-8"))
    tampered["counts"]["attempts"] = 40  # an edit the receipt's own digest no longer matches
    Path("run1/receipt.json").write_text(json.dumps(tampered), encoding="utf-8")
    rejected = refcal.promote_receipts(["run1"], "gates.toml", out="decision.json")
    assert not rejected.promoted and rejected.decision == "REJECTED"
    assert any("edited" in problem for outcome in rejected.outcomes for problem in outcome.problems)


def test_drill_checks_its_options_before_the_target_starts() -> None:
    with StubServer(lambda request, number: Reply()) as stub:
        spec = f"openai:stub@{stub.base_url}"
        with pytest.raises(ValueError, match="hints"):
            refcal.drill("starter", spec, judge="markers", hints="sometimes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="choose one"):
            refcal.drill("starter", spec, judge="markers", mutators="surface", scripts="all")
        with pytest.raises(ValueError, match="unknown scripts"):
            refcal.drill("starter", spec, judge="markers", scripts="no-such-script")
        with pytest.raises(BenchError):
            refcal.drill("no-such-bench", spec, judge="markers")
        sent = stub.chat_requests
    assert sent == 0
    assert not Path("runs").exists()


@pytest.mark.model
def test_drill_the_embedded_model() -> None:
    receipt = refcal.drill("starter", "llamacpp:smollm2", judge="markers", limit=2, max_tokens=16, out="run")
    assert receipt.status == "complete" and receipt.counts.attempts == 2
    assert receipt.target.spec.startswith("llamacpp:") and refcal.read_receipt("run").run_id == receipt.run_id
