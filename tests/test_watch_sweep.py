"""The log sweep on real refusal and compliance texts: counting exactly once across restarts, kills and
rotation, quarantining bad lines, alerting on a planted change point, the review cadence, and refusal classes
on held-out bench items (the markers lane's literal search is checked in tests/test_markers.py)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refcal.bench import load_bench
from refcal.bench.items import Bench
from refcal.cli.main import app
from refcal.errors import StoreError
from refcal.judges import make_judge
from refcal.judges.base import judge_rows
from refcal.judges.markers import MarkersJudge
from refcal.judges.risk import RequestRisk, pretext_bench
from refcal.review.queue import draw_queue
from refcal.store.runs import Store
from refcal.watch.alerts import JsonlSink
from refcal.watch.ledger import Ledger
from refcal.watch.refusal_class import RefusalClassifier, refusal_class
from refcal.watch.sweep import Sweep, SweepSettings

JUDGE_DATA = Path(__file__).parent.parent / "research" / "judge_data"


def _rows() -> list[dict]:
    return [json.loads(line) for path in sorted(JUDGE_DATA.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def texts() -> dict[str, list[str]]:
    """Hand-written responses from research/judge_data, split by what the markers lane makes of them."""
    markers = MarkersJudge()
    found: dict[str, list[str]] = {"refusal": [], "compliance": []}
    for row in _rows():
        label = markers.judge(row["prompt"], row["response"]).label
        if label in found and len(row["response"]) < 1500:
            found[label].append(row["response"])
    return found


@pytest.fixture(scope="module")
def classifier() -> RefusalClassifier:
    return RefusalClassifier(RequestRisk.default())


BENIGN = [item.prompt for item in load_bench("routine").items]
HARMFUL = [item.prompt for item in load_bench("starter").items if item.expect == "refuse"]


def _line(prompt: str, response: str | None, at: int, **extra: object) -> str:
    minute, second = divmod(at, 60)
    record = {"request": {"model": "m", "messages": [{"role": "system", "content": "Be helpful."},
                                                     {"role": "user", "content": prompt}]},
              "response": None if response is None else {"choices": [{"message": {"role": "assistant",
                                                                                  "content": response}}]},
              "time": f"2026-03-01T{minute // 60:02d}:{minute % 60:02d}:{second:02d}+00:00", **extra}
    return json.dumps(record)


def _traffic(texts: dict[str, list[str]], count: int, seed: int, start: int = 0, harmful: float = 0.05,
             benign_refused: float = 0.0, route: str | None = None) -> list[str]:
    """Benign routine requests answered, must-refuse requests refused (a share), and benign requests refused
    (a share: false refusals)."""
    rng = random.Random(seed)
    lines = []
    for index in range(count):
        draw = rng.random()
        extra = {"route": route} if route else {}
        if draw < harmful:
            lines.append(_line(rng.choice(HARMFUL), rng.choice(texts["refusal"]), start + index, **extra))
        elif draw < harmful + benign_refused:
            lines.append(_line(rng.choice(BENIGN), rng.choice(texts["refusal"]), start + index, **extra))
        else:
            lines.append(_line(rng.choice(BENIGN), rng.choice(texts["compliance"]), start + index, **extra))
    return lines


def _append(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write("".join(line + "\n" for line in lines))


def _sweep(tmp_path: Path, classifier: RefusalClassifier, logs: list[Path] | None = None, **settings: object) -> Sweep:
    options = {"window": 100, "judge": "markers", **settings}
    return Sweep(SweepSettings(logs=logs or [tmp_path / "app.log"], store=tmp_path / "store.db", **options),
                 classifier=classifier, sinks=[JsonlSink(tmp_path / "alerts.jsonl")])


# --- counting, exactly once ----------------------------------------------------------------------------------

def test_sweep_counts_each_line_once_across_restarts_and_rotation(tmp_path: Path, texts, classifier) -> None:
    log = tmp_path / "app.log"
    _append(log, _traffic(texts, 250, seed=1))
    with _sweep(tmp_path, classifier) as first:
        first.run_pass()
    _append(log, _traffic(texts, 50, seed=2, start=250))
    log.rename(tmp_path / "app.log.1")
    _append(log, _traffic(texts, 120, seed=3, start=300))
    with _sweep(tmp_path, classifier) as second:  # a restart, after the rotation
        second.run_pass()
        second.run_pass()
        totals = second.state.totals
        windows = second.state.windows["all"]
    assert totals.exchanges == 420 and totals.lines == 420
    assert windows.index == 4 and windows.seen == 20  # 420 exchanges = 4 closed windows of 100 + 20
    with Ledger(tmp_path / "store.db") as ledger:
        assert [point.index for point in ledger.windows("refusal", "all")] == [0, 1, 2, 3]


def test_a_failure_mid_pass_commits_nothing_of_its_batch(tmp_path: Path, texts, classifier) -> None:
    """A judge that dies on the third batch: that batch's lines are read again after the restart, the two
    committed ones are not."""
    log = tmp_path / "app.log"
    _append(log, _traffic(texts, 300, seed=4))

    class Dies:
        name, version = "markers", "markers-test"

        def __init__(self) -> None:
            self.calls, self.inner = 0, MarkersJudge()

        async def judge_batch(self, rows):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("killed")
            return await self.inner.judge_batch(rows)

    settings = SweepSettings(logs=[log], store=tmp_path / "store.db", window=100, judge="markers")
    dying = Sweep(settings, judge=Dies(), classifier=classifier)
    dying.tail.chunk_bytes = 16_384  # several batches
    with pytest.raises(RuntimeError):
        dying.run_pass()
    committed = dying.state.totals.exchanges
    dying.close()
    assert 0 < committed < 300
    with _sweep(tmp_path, classifier) as restarted:
        assert restarted.state.totals.exchanges == committed
        restarted.run_pass()
        assert restarted.state.totals.exchanges == 300


def test_sigkill_in_a_loop_loses_and_repeats_nothing(tmp_path: Path, texts) -> None:
    """The real thing: `refcal watch` killed with SIGKILL while lines keep arriving, restarted each time."""
    log, store = tmp_path / "app.log", tmp_path / "store.db"
    rng = random.Random(5)
    written = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "refcal.cli", "watch", str(log), "--every", "50ms",
                                    "--judge", "markers", "--window", "50", "--store", str(store)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            for _ in range(8):  # answers only: no refusal, so no classifier to build
                lines = [_line(rng.choice(BENIGN), rng.choice(texts["compliance"]), written + index)
                         for index in range(rng.randint(50, 400))]
                _append(log, lines)
                written += len(lines)
                time.sleep(rng.uniform(0.05, 0.4))
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    with Sweep(SweepSettings(logs=[log], store=store, window=50, judge="markers")) as final:
        final.run_pass()
        assert final.state.totals.exchanges == written
        assert final.state.windows["all"].index * 50 + final.state.windows["all"].seen == written


# --- bad input --------------------------------------------------------------------------------------------------

def test_malformed_lines_are_quarantined_with_file_and_line_and_the_sweep_goes_on(tmp_path: Path, texts,
                                                                                 classifier) -> None:
    log = tmp_path / "app.log"
    good = _traffic(texts, 10, seed=6)
    bad = ['{"request": {"messages": [{"role": "user", "content": "mail me at jane.doe@example.com"}]}, "resp',
           "[1, 2, 3]",
           json.dumps({"request": {"messages": [{"role": "user", "content": "hi"}]}, "response": {"choices": []}}),
           json.dumps({"response": {"choices": [{"message": {"content": "ok"}}]}}),
           json.dumps({"request": {"messages": [{"role": "assistant", "content": "hi"}]},
                       "response": {"choices": [{"message": {"content": "ok"}}]}})]
    _append(log, good[:5] + bad + good[5:])
    with log.open("ab") as file:
        file.write(b'{"request": "\xff\xfe"}\n')
        file.write(b'{"x": "' + b"y" * 1_200_000 + b'"}\n')
    _append(log, _traffic(texts, 3, seed=7))
    with _sweep(tmp_path, classifier) as sweep:
        report = sweep.run_pass()
        quarantined = sweep.quarantined()
    assert report.exchanges == 13 and report.malformed == 7
    where = [(Path(row["file"]).name, row["line"]) for row in quarantined]
    assert where == [("app.log", number) for number in range(6, 11)] + [("app.log", 16), ("app.log", 17)]
    reasons = [row["reason"] for row in quarantined]
    assert reasons[0].startswith("invalid JSON") and "jane.doe" not in quarantined[0]["raw"]
    assert "[email]" in quarantined[0]["raw"]
    assert reasons[1] == "not a JSON object (a list)"
    assert "response.choices" in reasons[2] and "request.messages" in reasons[3]
    assert "no user message" in reasons[4]
    assert "UTF-8" in reasons[5] or "JSON" in reasons[5]
    assert "over 1,000,000 bytes" in reasons[6]


def test_one_sweep_per_name_and_store(tmp_path: Path, classifier) -> None:
    with _sweep(tmp_path, classifier), pytest.raises(StoreError, match="another sweep named 'default'"):
        _sweep(tmp_path, classifier)
    with _sweep(tmp_path, classifier), _sweep(tmp_path, classifier, name="eu"):
        pass  # another name keeps its own state; the first lock was released on close


def test_upstream_errors_are_counted_apart_not_judged(tmp_path: Path, texts, classifier) -> None:
    log = tmp_path / "app.log"
    _append(log, [_line("hello", None, 0, error={"message": "upstream down"}), *_traffic(texts, 4, seed=8)])
    with _sweep(tmp_path, classifier) as sweep:
        report = sweep.run_pass()
        assert sweep.state.totals.errors == 1 and report.malformed == 0
        assert sweep.state.windows["all"].seen == 4


def test_a_field_map_reads_other_shapes(tmp_path: Path, texts, classifier) -> None:
    log = tmp_path / "other.log"
    _append(log, [json.dumps({"input": {"text": prompt}, "output": texts["compliance"][index], "ts": 1_772_000_000,
                              "svc": "search"}) for index, prompt in enumerate(BENIGN[:6])])
    mapping = "prompt=input.text,response=output,time=ts,route=svc"
    with _sweep(tmp_path, classifier, logs=[log], fields=mapping) as sweep:
        sweep.run_pass()
        assert sweep.state.totals.exchanges == 6
        assert sweep.state.windows["route:search"].seen == 6
        assert sweep.state.windows["all"].start.startswith("2026-02-25")


# --- change point → alert → ledger; review cadence -----------------------------------------------------------

def test_a_planted_surge_of_false_refusals_alerts_and_opens_a_ledger_entry(tmp_path: Path, texts,
                                                                          classifier) -> None:
    log = tmp_path / "app.log"
    before = _traffic(texts, 1200, seed=9, route="chat")  # 12 windows of 100 at the baseline
    after = _traffic(texts, 600, seed=10, start=1200, benign_refused=0.2, route="chat")  # +20 % false refusals
    _append(log, before)
    with _sweep(tmp_path, classifier) as sweep:
        quiet = sweep.run_pass()
        assert quiet.breaches == []
        _append(log, after)
        loud = sweep.run_pass()
        totals = sweep.state.totals
    flagged = {(breach.metric, breach.segment) for breach in loud.breaches}
    assert ("likely_false_refusal", "all") in flagged and ("refusal", "route:chat") in flagged
    first = min(breach.index for breach in loud.breaches if breach.metric == "likely_false_refusal")
    assert 12 <= first <= 13  # the surge starts with window 12
    assert totals.likely_false > 80
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert len(alerts) == len(loud.breaches) == loud.delivered
    sample = alerts[0]["samples"][0]
    assert sample["source"].startswith(str(log)) and sample["refusal_class"] in ("likely_false", "warranted",
                                                                                "unclear")
    with Ledger(tmp_path / "store.db") as ledger:
        entries = {(entry.metric, entry.segment): entry for entry in ledger.entries()}
        assert ("likely_false_refusal", "all") in entries
        entry = entries[("likely_false_refusal", "all")]
        assert entry.status == "open" and entry.window >= 12 and entry.samples
        assert len(ledger.windows("likely_false_refusal", "all")) == 18


def test_every_third_pass_writes_a_review_run_the_queue_serves(tmp_path: Path, texts, classifier) -> None:
    log = tmp_path / "app.log"
    runs = []
    with _sweep(tmp_path, classifier) as sweep:
        for number in range(6):
            _append(log, _traffic(texts, 150, seed=20 + number, start=150 * number, harmful=0.1, benign_refused=0.1))
            runs.append(sweep.run_pass().review_run)
    assert runs[0] is None and runs[1] is None and runs[3] is None and runs[4] is None
    assert runs[2] == "watch-default-00003" and runs[5] == "watch-default-00006"
    with Store(tmp_path / "store.db") as store:
        run = store.get_run(runs[2])
        attempts = list(store.attempts(runs[2]))
        assert 10 <= len(attempts) <= 30
        assert all(attempt.verdict is not None and attempt.verdict.label in ("refusal", "partial_refusal")
                   for attempt in attempts)
        classes = {attempt.variant.klass for attempt in attempts}
        assert {"likely_false", "warranted"} <= classes
        for attempt in attempts:
            assert attempt.variant.expect == ("refuse" if attempt.variant.klass == "warranted" else "comply")
        assert run.bench_name == "watch-default" and run.status == "complete"
        picks = draw_queue(store, [runs[2]], "alice")
        assert picks and {pick.run_id for pick in picks} == {runs[2]}
        assert {pick.variant_id for pick in picks} <= {attempt.variant.id for attempt in attempts}
        second = list(store.attempts(runs[5]))
        assert not {attempt.variant.id for attempt in second} & {attempt.variant.id for attempt in attempts}


def test_review_samples_and_alerts_are_redacted_unless_text_is_kept(tmp_path: Path, texts, classifier) -> None:
    secret = "Email me at bob@example.org, my key is sk-abcdefghijklmnop0123456789"
    for keep_text in (False, True):
        folder = tmp_path / ("kept" if keep_text else "redacted")
        folder.mkdir()
        _append(folder / "app.log", [_line(secret, texts["refusal"][0], 0)])
        with _sweep(folder, classifier, review_every=1, keep_text=keep_text) as sweep:
            run_id = sweep.run_pass().review_run
        assert run_id is not None
        with Store(folder / "store.db") as store:
            (attempt,) = store.attempts(run_id)
        shown = attempt.variant.prompt
        assert ("bob@example.org" in shown and "sk-abc" in shown) is keep_text
        assert ("[email]" in shown and "[secret]" in shown) is not keep_text


def test_the_cascade_judges_the_sweep(tmp_path: Path, texts, classifier) -> None:
    log = tmp_path / "app.log"
    lines = _traffic(texts, 60, seed=30, harmful=0.3)
    _append(log, lines)
    with _sweep(tmp_path, classifier, judge="cascade", window=20) as sweep:
        sweep.run_pass()
        totals = sweep.state.totals
    pairs = [(json.loads(line)["request"]["messages"][-1]["content"],
              json.loads(line)["response"]["choices"][0]["message"]["content"]) for line in lines]
    expected = judge_rows(make_judge("cascade"), pairs)
    assert totals.refusals == sum(verdict.label in ("refusal", "partial_refusal") for verdict in expected)
    assert totals.undetermined == sum(verdict.label == "undetermined" for verdict in expected)
    assert totals.exchanges == 60


# --- refusal classes ----------------------------------------------------------------------------------------------

def _pair_number(item_id: str) -> int:
    return int(item_id.split("-")[-2])


def test_refusal_classes_on_held_out_starter_items(classifier: RefusalClassifier) -> None:
    """Scorer fit on half the starter pairs (with routine and pretexts), classes read on the other half."""
    starter = load_bench("starter")
    embedder = classifier.risk._embedder
    found: dict[str, list[str]] = {"refuse": [], "comply": []}
    for fold in (0, 1):
        train = Bench(name="starter-train", items=tuple(item for item in starter.items
                                                        if _pair_number(item.id) % 2 == fold))
        held_out = [item for item in starter.items if _pair_number(item.id) % 2 != fold]
        held = RefusalClassifier(RequestRisk.from_benches([train, load_bench("routine"), pretext_bench()], embedder))
        for item, klass in zip(held_out, held.classify_many([item.prompt for item in held_out]), strict=True):
            found[item.expect].append(klass)
    must, benign = found["refuse"], found["comply"]
    assert must.count("warranted") >= 0.6 * len(must)
    assert must.count("likely_false") <= 0.08 * len(must)
    assert benign.count("likely_false") >= 0.2 * len(benign)
    precision = benign.count("likely_false") / (benign.count("likely_false") + must.count("likely_false"))
    assert precision >= 0.8


def test_a_risk_score_logged_by_the_guard_is_reused(classifier: RefusalClassifier) -> None:
    prompt = BENIGN[3]
    score = classifier.risk.score(prompt)
    before = classifier.embedded
    logged = {**score.model_dump(), "version": classifier.risk.version, "mode": "flag"}
    stale = {**score.model_dump(), "harmful": 0.99, "version": "risk-0+old"}
    first, second = classifier.classify_many([prompt, "a request never seen before, about llamas"],
                                             [logged, stale])
    assert first == refusal_class(score)
    assert classifier.embedded == before + 1  # only the one with a stale score was embedded
    assert second in ("likely_false", "warranted", "unclear")


# --- the command -----------------------------------------------------------------------------------------------

def test_refcal_watch_once(tmp_path: Path, texts) -> None:
    log = tmp_path / "app.log"
    _append(log, [_line(prompt, texts["compliance"][index], index) for index, prompt in enumerate(BENIGN)])
    _append(log, ["{broken"])
    runner = CliRunner()
    result = runner.invoke(app, ["watch", str(log), "--once", "--judge", "markers", "--window", "10",
                                 "--store", str(tmp_path / "store.db")])
    assert result.exit_code == 0, result.output
    assert "pass 1: 31 lines, 30 exchanges" in result.output and "3 windows closed" in result.output
    again = runner.invoke(app, ["watch", "sweep", str(log), "--once", "--judge", "markers", "--window", "10",
                                "--store", str(tmp_path / "store.db")])
    assert "pass 2: 0 lines" in again.output
    bad = runner.invoke(app, ["watch", str(log), "--once", "--map", "colour=x", "--store", str(tmp_path / "s.db")])
    assert bad.exit_code == 2 and "unknown field 'colour'" in bad.output
    ledger = runner.invoke(app, ["watch", "ledger", "--store", str(tmp_path / "store.db")])
    assert ledger.exit_code == 0


def test_ctrl_c_stops_the_loop_cleanly_and_the_next_start_resumes(tmp_path: Path, texts) -> None:
    log, store = tmp_path / "app.log", tmp_path / "store.db"
    _append(log, [_line(prompt, texts["compliance"][index], index) for index, prompt in enumerate(BENIGN)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "refcal.cli", "watch", str(log), "--every", "100ms", "--judge", "markers",
               "--window", "10", "--store", str(store)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("pass 1: 30 lines"), first
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 0, rest
    assert "stopped; everything read so far is committed" in rest
    _append(log, [_line(BENIGN[0], texts["compliance"][0], 99)])
    again = subprocess.run([*command[:5], "--once", *command[5:]], capture_output=True, text=True, env=env,
                           timeout=120)
    assert re.search(r"pass \d+: 1 lines, 1 exchanges", again.stdout), again.stdout
