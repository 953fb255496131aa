"""SIGKILL in the middle of a drill loses nothing committed; --resume sends each remaining variant once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

from helpers import refcal as run_refcal
from helpers import refcal_process as refcal

from refcal.testing import Reply, StubServer

ITEMS = 60


def committed(db_path) -> int:
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_sigkill_then_resume_is_exactly_once(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"q{index:03d}", "prompt": f"Question {index}?",
                                         "expect": "refuse" if index % 2 else "comply"}) + "\n"
                             for index in range(ITEMS)))
    db = tmp_path / "store.db"
    with StubServer(lambda request, number: Reply(text="I can't help with that.", delay_s=0.05)) as stub:
        spec = f"openai:stub@{stub.base_url}"
        first = refcal("drill", "--bench", str(bench), "--target", spec, "--concurrency", "2",
                       "--store", str(db), "--out", str(tmp_path / "out"))
        deadline = time.monotonic() + 60
        while committed(db) < 15 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        before = committed(db)
        sent_before = stub.chat_requests
        assert 15 <= before < ITEMS, "the kill must land mid-drill"

        second = refcal("drill", "--resume", str(tmp_path / "out"), "--store", str(db))
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        sent_after = stub.chat_requests - sent_before

    assert committed(db) == ITEMS
    assert sent_after == ITEMS - before
    with sqlite3.connect(db) as database:
        ids = [row[0] for row in database.execute("SELECT variant_id FROM attempts")]
        status = database.execute("SELECT status FROM runs").fetchone()[0]
    assert sorted(ids) == [f"q{index:03d}" for index in range(ITEMS)]
    assert status == "complete"
    receipt = json.loads((tmp_path / "out" / "receipt.json").read_text())
    assert receipt["counts"]["attempts"] == ITEMS and receipt["counts"]["errors"] == 0


def test_a_second_resume_of_a_running_drill_stops_before_sending(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"q{index:03d}", "prompt": f"Question {index}?",
                                         "expect": "refuse" if index % 2 else "comply"}) + "\n"
                             for index in range(30)))
    db = tmp_path / "store.db"
    with StubServer(lambda request, number: Reply(text="I can't help with that.", delay_s=0.1)) as stub:
        spec = f"openai:stub@{stub.base_url}"
        first = refcal("drill", "--bench", str(bench), "--target", spec, "--concurrency", "1",
                       "--store", str(db), "--out", str(tmp_path / "out"))
        deadline = time.monotonic() + 60
        while committed(db) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        sent_before = stub.chat_requests
        second = refcal("drill", "--resume", str(tmp_path / "out"), "--store", str(db))
        output, _ = second.communicate(timeout=120)
        first_output, _ = first.communicate(timeout=120)
    assert second.returncode == 2 and "is being resumed or drilled by process" in output, output
    assert str(first.pid) in output and "Traceback" not in output
    assert first.returncode == 0, first_output
    assert stub.chat_requests == 30 and sent_before <= 30  # every variant sent once, none by the second process
    with sqlite3.connect(db) as database:
        assert database.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 30


def drilled_six(tmp_path):
    """A complete 6-attempt run against a stub: its store, its receipt's path and the receipt's text."""
    db = tmp_path / "store.db"
    with StubServer(lambda request, number: Reply(text="I can't help with that.")) as stub:
        drilled = run_refcal("drill", "--limit", "6", "--target", f"openai:stub@{stub.base_url}", "--store", str(db),
                             "--out", str(tmp_path / "out"))
    assert drilled.returncode == 0, drilled.stderr
    receipt = tmp_path / "out" / "receipt.json"
    return db, receipt, receipt.read_text()


def test_report_on_a_damaged_store_never_replaces_a_fuller_receipt(tmp_path):
    db, receipt, good = drilled_six(tmp_path)
    with sqlite3.connect(db) as database:
        database.execute("DROP TABLE attempts")
    damaged = run_refcal("report", str(tmp_path / "out"), "--store", str(db))
    assert damaged.returncode == 2 and "table 'attempts' is missing" in damaged.stderr
    assert "Traceback" not in damaged.stderr and receipt.read_text() == good
    with sqlite3.connect(db) as database:  # a reading command never re-creates the missing table
        tables = {row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "attempts" not in tables


def test_a_receipt_is_not_replaced_by_one_with_fewer_attempts_without_force(tmp_path):
    db, receipt, good = drilled_six(tmp_path)
    with sqlite3.connect(db) as database:  # rows lost (a store restored from an older copy)
        database.execute("DELETE FROM attempts WHERE rowid IN (SELECT rowid FROM attempts LIMIT 2)")
    refused = run_refcal("report", str(tmp_path / "out"), "--store", str(db))
    assert refused.returncode == 2 and "not replaced" in refused.stderr and receipt.read_text() == good
    forced = run_refcal("report", str(tmp_path / "out"), "--store", str(db), "--force")
    assert forced.returncode == 0 and json.loads(receipt.read_text())["counts"]["attempts"] == 4


def test_a_damaged_run_pointer_is_one_line(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("{not json")
    result = run_refcal("report", str(out), "--store", str(tmp_path / "s.db"))
    assert result.returncode == 2 and "run.json" in result.stderr and "Traceback" not in result.stderr


def test_a_report_that_cannot_be_written_leaves_the_run_interrupted_and_resumable(tmp_path):
    db, out = tmp_path / "store.db", tmp_path / "out"
    (out / "report.html").mkdir(parents=True)  # the write fails as on a full or read-only folder
    with StubServer(lambda request, number: Reply(text="I can't help with that.")) as stub:
        failed = run_refcal("drill", "--limit", "4", "--target", f"openai:stub@{stub.base_url}", "--store", str(db),
                            "--out", str(out))
        assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
        assert "marked interrupted" in failed.stderr and "refcal drill --resume" in failed.stderr
        with sqlite3.connect(db) as database:
            assert database.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
        assert not list(out.glob(".report.html.*"))  # no temporary file left behind
        (out / "report.html").rmdir()
        resumed = run_refcal("drill", "--resume", str(out), "--store", str(db))
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "report.html").is_file() and json.loads((out / "receipt.json").read_text())["status"] == "complete"
