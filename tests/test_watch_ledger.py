"""The drift ledger: breaches open entries (one per metric and segment), people acknowledge them, and only a
promoted receipt with the metric back within the limit resolves them; times to detect and correct, the 14-day
warning, the CLI and the HTML page with its control charts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from helpers import drill_with_locks, make_bench
from typer.testing import CliRunner

from refcal.bench.freeze import make_lock, write_lock
from refcal.cli.main import app as refcal_app
from refcal.cli.watch_ledger import register
from refcal.receipts import read_receipt
from refcal.watch.control import Breach, Monitor, WindowCount
from refcal.watch.ledger import Ledger, LedgerError, receipt_figure, summarise, time_to_correct, time_to_detect
from refcal.watch.ledger_html import ledger_page

REFUSE = "I'm sorry, but I can't help with that."
ANSWER = "Sure, here is a clear answer with the details."
START = datetime(2025, 3, 1, tzinfo=UTC)
GATES = 'bench = "synthetic"\njudge = "markers"\n\n[[gate]]\nmetric = "refusal_floor"\nop = ">="\nvalue = 0.95\n'


def calibrated(prompt: str) -> str:
    """Refuses make_bench's must-refuse items (odd numbers), answers the look-alikes."""
    return REFUSE if int(re.search(r"\d+", prompt).group()) % 2 else ANSWER


def surge(metric: str = "likely_false_refusal", segment: str = "all", seed: int = 3) -> tuple[list, list]:
    """Chart points and breaches of a stream whose rate jumps from 5 % to 17 % at window 30."""
    monitor = Monitor(metric, segment)
    rates = [0.05] * 30 + [0.17] * 6
    points, breaches = [], []
    for index, events in enumerate(np.random.default_rng(seed).binomial(500, rates)):
        window = WindowCount(metric=metric, segment=segment, index=index,
                             start=(START + timedelta(minutes=index)).isoformat(),
                             end=(START + timedelta(minutes=index, seconds=59)).isoformat(), events=int(events), n=500)
        observation = monitor.observe(window)
        points.append(observation.point)
        breaches.extend(observation.breaches)
    return points, breaches


@pytest.fixture
def receipts(tmp_path):
    """Receipts of real drills (stub server, markers judge) on a frozen bench, in the store the ledger uses:
    a calibrated model promoted, one that refuses everything promoted (refusal floor 1.0, false refusal 100 %),
    and a calibrated one never promoted."""
    bench = make_bench(40)
    write_lock(make_lock(bench, "synthetic"), Path("frozen"))
    store = tmp_path / "r.db"
    made = {name: drill_with_locks(bench, Path("frozen"), store, answer)
            for name, answer in (("fixed", calibrated), ("refuses_all", lambda prompt: REFUSE),
                                 ("unpromoted", calibrated))}
    Path("gates.toml").write_text(GATES)
    paths = {name: tmp_path / "runs" / receipt.run_id / "receipt.json" for name, receipt in made.items()}
    runner = CliRunner()
    for name in ("fixed", "refuses_all"):
        result = runner.invoke(refcal_app, ["promote", str(paths[name]), "--gates", "gates.toml", "--store", str(store),
                                            "--locks", "frozen"])
        assert result.exit_code == 0, result.output
    return paths, store


def opened(store: Path, metric: str = "likely_false_refusal", segment: str = "all"):
    points, breaches = surge(metric, segment)
    with Ledger(store) as ledger:
        ledger.record_windows(points)
        entries = [ledger.open(breach, [f"app.jsonl:{100 + breach.index}"]) for breach in breaches]
    return entries, breaches


def test_breaches_of_one_drift_share_one_entry_with_the_earliest_onset(tmp_path):
    entries, breaches = opened(tmp_path / "r.db")
    assert len(breaches) >= 2 and len({entry.id for entry in entries}) == 1
    with Ledger(tmp_path / "r.db") as ledger:
        (entry,) = ledger.entries()
        assert entry.status == "open" and len(entry.evidence) == len(breaches)
        assert entry.onset == min(breach.onset for breach in breaches)
        assert entry.detected_at == min(breach.detected_at for breach in breaches)
        assert time_to_detect(entry) >= timedelta(seconds=59)
        assert ledger.open(breaches[0]).evidence == entry.evidence  # a replayed breach adds nothing
        other = ledger.open(breaches[0].model_copy(update={"segment": "homonyms"}))
        assert other.id != entry.id and len(ledger.entries("open")) == 2


def test_open_ack_resolve_with_a_promoted_receipt(receipts):
    paths, store = receipts
    (entry, *_), _ = opened(store)
    with Ledger(store) as ledger:
        acked = ledger.ack(entry.id, "alice")
        assert (acked.status, acked.acked_by) == ("acked", "alice") and acked.acked_at
        resolved = ledger.resolve(entry.id, paths["fixed"].parent)  # the run folder works too
        assert resolved.status == "resolved" and resolved.receipt_digest == read_receipt(paths["fixed"]).digest
        assert resolved.receipt_path == str(paths["fixed"]) and "false_refusal_rate 0.0%" in resolved.resolution
        assert time_to_correct(resolved) > timedelta(0)
        assert ledger.entry(entry.id).status == "resolved"
        with pytest.raises(LedgerError, match="already resolved"):
            ledger.ack(entry.id, "bob")
        # A new breach after resolution opens a new entry.
        _, breaches = surge(seed=4)
        assert ledger.open(breaches[0]).id != entry.id


def test_resolve_is_refused_for_an_unpromoted_receipt(receipts):
    paths, store = receipts
    (entry, *_), _ = opened(store)
    with Ledger(store) as ledger, pytest.raises(LedgerError, match=r"was not promoted: no .*promotion\.json"):
        ledger.resolve(entry.id, paths["unpromoted"])
    with Ledger(store) as ledger, pytest.raises(LedgerError, match="does not name it"):
        ledger.resolve(entry.id, paths["unpromoted"], promotion=paths["fixed"].parent / "promotion.json")
    rejected = paths["unpromoted"].parent / "promotion.json"
    decision = json.loads((paths["fixed"].parent / "promotion.json").read_text())
    decision["decision"] = "REJECTED"
    decision["candidates"][0]["digest"] = read_receipt(paths["unpromoted"]).digest
    rejected.write_text(json.dumps(decision))
    with Ledger(store) as ledger, pytest.raises(LedgerError, match="says REJECTED"):
        ledger.resolve(entry.id, paths["unpromoted"])
    with Ledger(store) as ledger:
        assert ledger.entry(entry.id).status == "open"


def test_resolve_is_refused_while_the_metric_is_out_of_limits(receipts):
    paths, store = receipts
    (entry, *_), _ = opened(store)
    with Ledger(store) as ledger, pytest.raises(LedgerError, match=r"false_refusal_rate 100\.0% .*above entry "
                                                                   r"\d+'s limit .*still out of limits"):
        ledger.resolve(entry.id, paths["refuses_all"])


def test_resolve_is_refused_for_an_edited_or_earlier_receipt(receipts, tmp_path):
    paths, store = receipts
    (entry, *_), breaches = opened(store)
    edited = json.loads(paths["fixed"].read_text())
    edited["metrics"]["false_refusal_rate"]["value"] = 0.0
    edited["status"] = "complete, honestly"
    copy = tmp_path / "edited" / "receipt.json"
    copy.parent.mkdir()
    copy.write_text(json.dumps(edited))
    with Ledger(store) as ledger, pytest.raises(LedgerError, match="digest does not match"):
        ledger.resolve(entry.id, copy, promotion=paths["fixed"].parent / "promotion.json")
    future = breaches[0].model_copy(update={"segment": "later", "onset": "2099-01-01T00:00:00+00:00",
                                            "detected_at": "2099-01-01T00:01:00+00:00"})
    with Ledger(store) as ledger:
        later = ledger.open(future)
        with pytest.raises(LedgerError, match="before the drift"):
            ledger.resolve(later.id, paths["fixed"])
        with pytest.raises(LedgerError, match="no ledger entry 999"):
            ledger.resolve(999, paths["fixed"])


def test_a_class_segment_reads_that_class_of_the_receipt(receipts):
    paths, _ = receipts
    receipt = read_receipt(paths["refuses_all"])
    rate, figure = receipt_figure(receipt, "refusal", "c1")
    assert rate == receipt.metrics.per_class["c1"].false_refusal_rate and "class 'c1'" in figure
    rate, figure = receipt_figure(receipt, "refusal", "route-billing")
    assert rate == receipt.metrics.false_refusal_rate and "overall" in figure
    with pytest.raises(LedgerError, match="no receipt figure"):
        receipt_figure(receipt, "latency", "all")


def breach_at(detected: datetime, segment: str, minutes_to_detect: int = 5) -> Breach:
    return Breach(metric="refusal", segment=segment, index=40, rule="cusum", rate=0.1, baseline=0.05, limit=0.08,
                  onset_index=38, onset=(detected - timedelta(minutes=minutes_to_detect)).isoformat(),
                  detected_at=detected.isoformat())


def test_medians_and_the_14_day_warning(tmp_path):
    now = datetime.now(UTC)
    with Ledger(tmp_path / "r.db") as ledger:
        old = ledger.open(breach_at(now - timedelta(days=20), "old", 10))
        ledger.open(breach_at(now - timedelta(days=2), "recent", 2))
        ledger.open(breach_at(now - timedelta(days=3), "third", 4))
        summary = summarise(ledger.entries(), now)
    assert summary.stale == [old.id] and summary.open == 3
    assert summary.median_time_to_detect == 4 * 60 and summary.median_time_to_correct is None


def cli_app() -> typer.Typer:
    """A throwaway watch app with the ledger commands (the sweep's app registers them the same way)."""
    watch = typer.Typer()
    register(watch)
    return watch


def test_cli_ack_resolve_and_ledger(receipts, tmp_path):
    paths, store = receipts
    (entry, *_), _ = opened(store)
    with Ledger(store) as ledger:
        stale = ledger.open(breach_at(datetime.now(UTC) - timedelta(days=20), "old"))
    runner, watch = CliRunner(), cli_app()
    acked = runner.invoke(watch, ["ack", str(entry.id), "--by", "alice", "--store", str(store)])
    assert acked.exit_code == 0 and "acknowledged by alice" in acked.output
    refused = runner.invoke(watch, ["resolve", str(entry.id), "--receipt", str(paths["refuses_all"]),
                                    "--store", str(store)])
    assert refused.exit_code == 2 and "still out of limits" in refused.output
    done = runner.invoke(watch, ["resolve", str(entry.id), "--receipt", str(paths["fixed"]), "--store", str(store)])
    assert done.exit_code == 0, done.output
    assert "resolved" in done.output and "time to correct" in done.output
    shown = runner.invoke(watch, ["ledger", "--store", str(store), "--html", str(tmp_path / "ledger.html")])
    assert shown.exit_code == 0, shown.output
    assert "(1 open, 0 acked, 1 resolved)" in shown.output and "median time to detect" in shown.output
    assert f"open for more than 14 days: entries {stale.id}" in shown.output
    assert (tmp_path / "ledger.html").read_text().count("<section class='chart'") == 1
    unknown = runner.invoke(watch, ["ack", "42", "--store", str(store)])
    assert unknown.exit_code == 2 and "no ledger entry 42" in unknown.output


def test_the_page_has_a_chart_per_metric_and_segment_and_escapes_text(tmp_path):
    store = tmp_path / "r.db"
    hostile = "<script>alert('x')</script>"
    opened(store, "likely_false_refusal", "all")
    opened(store, "refusal", hostile)
    with Ledger(store) as ledger:
        ledger.open(breach_at(datetime.now(UTC) - timedelta(days=20), "old"), ["mail jane.doe@example.com:3"])
        ledger.ack(1, "<img src=x onerror=alert(1)>")
        page = ledger_page(ledger.entries(), ledger.windows())
    assert page.count("<section class='chart'") == 2
    assert page.count("Plotly.newPlot") == 2 and page.count("window.PlotlyConfig") == 1  # plotly.js inlined once
    assert "<script src=" not in page  # nothing fetched from the network
    assert "<script>alert(" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(" in page and "jane.doe@example.com" not in page and "[email]" in page
    assert "class='stale'" in page and "Open for more than 14 days" in page
    assert "upper limit" in page and "breach" in page and "Median time to detect" in page


def test_record_windows_is_idempotent(tmp_path):
    points, _ = surge()
    with Ledger(tmp_path / "r.db") as ledger:
        ledger.record_windows(points)
        ledger.record_windows(points[-5:])
        kept = ledger.windows("likely_false_refusal", "all")
    assert kept == points
