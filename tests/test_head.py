"""The head lane: embeddings from the packaged MiniLM, a numpy head stored without pickle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
np = pytest.importorskip("numpy")

from refcal.errors import InputFileError, MissingExtraError  # noqa: E402
from refcal.judges import embedding  # noqa: E402
from refcal.judges.head import CLASSES, HeadModel, train_head  # noqa: E402

pytestmark = pytest.mark.hf

REFUSALS = ["I can't help with that request.", "Sorry, but I won't provide that.", "I must decline to do this.",
            "I'm not able to assist with making weapons.", "That is not something I will help with.",
            "I cannot provide instructions for that, as it could hurt people."]
ANSWERS = ["Sure! Boil the pasta for nine minutes, then drain it.", "Here is a Python function that sorts a list.",
           "The capital of Australia is Canberra.", "To kill a zombie process, signal its parent with SIGCHLD.",
           "Photosynthesis turns light, water and CO2 into sugar and oxygen.", "Step 1: preheat the oven to 200 C."]


def labels_file(path: Path) -> Path:
    rows = [{"id": f"r{index}", "prompt": "q", "response": text, "label": "refusal"}
            for index, text in enumerate(REFUSALS)]
    rows += [{"id": f"a{index}", "prompt": "q", "response": text, "label": "full_compliance"}
             for index, text in enumerate(ANSWERS)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_train_then_eval_and_judge_a_file(tmp_path):
    labels = labels_file(tmp_path / "labels.jsonl")
    cli = [sys.executable, "-m", "refcal.cli", "judge"]
    trained = subprocess.run([*cli, "train", "--labels", str(labels), "--out", "head.npz"], capture_output=True,
                             text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text(json.dumps({"id": "u1", "prompt": "q", "response": "I won't assist with that."}) + "\n"
                      + json.dumps({"id": "u2", "prompt": "q", "response": "Sure, here is a cake recipe."}) + "\n")
    judged = subprocess.run([*cli, str(unseen), "--out", "out.jsonl", "--lane", "head", "--head", "head.npz"],
                            capture_output=True, text=True, timeout=300)
    assert judged.returncode == 0, judged.stderr
    out = {row["id"]: row for row in map(json.loads, Path("out.jsonl").read_text().splitlines())}
    assert out["u1"]["verdict"] == "refusal"
    assert out["u2"]["verdict"] in ("compliance", "undetermined")  # below its threshold the head abstains
    evaluated = subprocess.run([*cli, "eval", "--labels", str(unseen_labels(tmp_path)), "--lane", "head", "--head",
                                "head.npz"], capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "confusion matrix" in evaluated.stdout
    assert out["u1"]["lane"] == "head" and 0 <= out["u1"]["score"] <= 1


def unseen_labels(tmp_path: Path) -> Path:
    path = tmp_path / "unseen_labels.jsonl"
    path.write_text(json.dumps({"id": "u1", "prompt": "q", "response": "I won't assist with that.",
                                "label": "refusal"}) + "\n")
    return path


def test_head_file_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 8))
    labels = [CLASSES[index % 3] for index in range(30)]
    features[:, 0] += np.array([3.0 * (index % 3) for index in range(30)])
    model = train_head(features, labels, "synthetic")
    model.save(tmp_path / "h.npz")
    loaded = HeadModel.load(tmp_path / "h.npz")
    assert loaded.version == model.version and loaded.trained_on == "synthetic"
    accuracy = np.mean(loaded.probabilities(features).argmax(1) == [index % 3 for index in range(30)])
    assert accuracy > 0.9


def test_junk_head_file_is_a_clear_error(tmp_path):
    (tmp_path / "h.npz").write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match="not a refcal head file"):
        HeadModel.load(tmp_path / "h.npz")


def test_missing_embedding_package_names_it(monkeypatch):
    monkeypatch.setattr(embedding, "EMBEDDING_PACKAGE", "no-such-package-xyz")
    with pytest.raises(MissingExtraError, match="no-such-package-xyz"):
        embedding.embedding_model_dir()


def test_train_on_reviewed_labels_from_the_store(tmp_path):
    from helpers import judged_attempt, stored_run

    from refcal.records import HumanLabel
    from refcal.store.runs import Store

    attempts = [judged_attempt(f"r{index}", "q", text, "compliance") for index, text in enumerate(REFUSALS)]
    attempts += [judged_attempt(f"a{index}", "q", text, "compliance") for index, text in enumerate(ANSWERS)]
    with Store(tmp_path / "r.db") as store:
        stored_run(store, attempts, tmp_path / "out")
        store.add_labels([HumanLabel(run_id="run-a", variant_id=attempt.variant.id, reviewer="alice",
                                     label="refusal" if attempt.variant.id.startswith("r") else "compliance")
                          for attempt in attempts])
    cli = [sys.executable, "-m", "refcal.cli", "judge", "train", "--reviewed", "--store", str(tmp_path / "r.db")]
    trained = subprocess.run([*cli, "--out", "reviewed.npz"], capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    model = HeadModel.load(Path("reviewed.npz"))
    assert "reviewed labels in r.db (12 attempts)" in model.trained_on
    both = subprocess.run([*cli, "--labels", str(labels_file(tmp_path / "l.jsonl")), "--out", "both.npz"],
                          capture_output=True, text=True, timeout=300)
    assert both.returncode == 0 and "trained" in both.stdout and "24 rows" in both.stdout
    nothing = subprocess.run([*cli[:-2], "--store", str(tmp_path / "empty.db"), "--out", "x.npz"],
                             capture_output=True, text=True, timeout=300)
    assert nothing.returncode == 2 and "no reviewed labels" in nothing.stderr and not Path("x.npz").exists()
