"""Training asks the readiness record of its base first: ready passes; not ready or never checked needs --force."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from refcal.cli.recal import recal_app
from refcal.metrics.rates import wilson
from refcal.recal.readiness import (
    NotReadyError,
    Readiness,
    new_record,
    readiness_dir,
    record_readiness,
    require_ready,
)
from refcal.targets.weights import base_digest

BASE = "llamacpp:smollm2"


def verdict(ready: bool) -> Readiness:
    return Readiness(ready=ready, routine_refusal=wilson(1 if ready else 9, 30), lookalike_refusal=None,
                     unusable=0.0, reasons=[] if ready else ["refuses 9 of 30 routine requests (over 10%)"])


def test_a_ready_record_passes_and_others_need_force(tmp_path: Path) -> None:
    folder = tmp_path / "readiness"
    with pytest.raises(NotReadyError, match="never checked"):
        require_ready(BASE, "sha256:abc", folder, force=False)
    assert require_ready(BASE, "sha256:abc", folder, force=True).status == "forced-unchecked"

    record_readiness(new_record(BASE, "sha256:abc", verdict(False), tmp_path / "receipt.json"), folder)
    with pytest.raises(NotReadyError, match="refuses 9 of 30"):
        require_ready(BASE, "sha256:abc", folder, force=False)
    forced = require_ready(BASE, "sha256:abc", folder, force=True)
    assert forced.status == "forced-not-ready" and forced.reasons == verdict(False).reasons

    record_readiness(new_record(BASE, "sha256:abc", verdict(True), tmp_path / "receipt.json"), folder)
    assert require_ready(BASE, "sha256:abc", folder, force=False).status == "ready"
    # Another base's record does not count.
    with pytest.raises(NotReadyError):
        require_ready(BASE, "sha256:def", folder, force=False)


def test_sft_on_a_base_found_not_ready_stops_before_loading_it(tmp_path: Path) -> None:
    store = tmp_path / ".refcal" / "refcal.db"
    record_readiness(new_record(BASE, base_digest(BASE), verdict(False), tmp_path / "receipt.json"),
                     readiness_dir(store))
    Path("corpus.jsonl").write_text('{"messages": [{"role": "user", "content": "Hi"}, '
                                    '{"role": "assistant", "content": "Hello"}]}\n', encoding="utf-8")
    result = CliRunner().invoke(recal_app, ["sft", "--base", BASE, "--corpus", "corpus.jsonl", "--out", "out",
                                            "--store", str(store)])
    assert result.exit_code == 2
    assert "not ready" in result.output and "--force" in result.output
    assert not Path("out").exists()


def test_direction_editing_of_a_base_never_checked_needs_force(tmp_path: Path) -> None:
    result = CliRunner().invoke(recal_app, ["direction", "--base", BASE, "--out", "dir1", "--trials", "1",
                                            "--store", str(tmp_path / ".refcal" / "refcal.db")])
    assert result.exit_code == 2
    assert "never checked" in result.output and "--force" in result.output
    assert not Path("dir1").exists()
