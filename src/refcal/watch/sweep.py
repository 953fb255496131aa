"""The log sweep: new lines of JSONL exchange logs → verdicts → refusal classes → per-window counts → control
limits → alerts, drift-ledger entries and review samples.

Each batch of lines (one chunk of one file, from refcal.watch.tail) is judged in one call, its refusals classed
in one call, and counted into windows of `window` exchanges per segment: `all`, `route:NAME` for the log's
route, and the log's class name. A window counts two metrics over its judged exchanges (undetermined verdicts
are counted apart, upstream errors are not exchanges): `refusal` (full and partial refusals) and
`likely_false_refusal` (refusals classed likely false, refcal.watch.refusal_class). A closed window goes to the
(metric, segment) Monitor (refcal.watch.control); a breach becomes an Alert with up to `samples` of the
exchanges behind it (redacted unless keep_text) and a ledger entry.

**Exactly once.** Everything a batch changes — the tail's cursors, quarantined lines, window counts, monitor
states, the review pool, and the alerts and chart points still to hand over — is committed in one transaction
(tables watch_state, watch_quarantine, watch_review_pool, and the tail's watch_offsets, on this sweep's own
connection). Handing over to the outbox and the ledger happens after the commit and is idempotent on their side
(same alert id, same breach, same chart point), so a kill anywhere either repeats a handover harmlessly or
re-reads lines whose effects were never committed.

**Review cadence.** Every `review_every`-th pass (3) writes the refusals pooled since the last such pass — a
reservoir per stratum (refusal class × segment), equal shares up to `review_size` — as a run in the store
(`refcal review RUN` shows it). Its bench is synthetic: one item per sampled exchange, `klass` = the refusal
class, `expect=refuse` for warranted refusals and `expect=comply` for likely-false and unclear ones — the sweep
asks of every refusal whether it was false, and only one the classifier found must-refuse-like is presented as
must-refuse; an unclear one is put to the reviewer as a candidate false refusal rather than assumed justified.

Malformed lines are quarantined with file, line and reason (the raw line redacted) and never stop the sweep.
Parts of a log gone before they were read (refcal.watch.tail: a rotated file deleted, a copy-truncate's copy
replaced, a compressed copy cut short) are recorded by the tail in `watch_gaps` with the batch that finds them,
counted in `totals.gaps`, and raised as alerts (Alert.gap) through the same outbox.
"""

from __future__ import annotations

import fcntl
import json
import random
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refcal.clock import utc_now
from refcal.errors import StoreError
from refcal.judges.base import Judge, judge_rows
from refcal.judges.markers import MarkersJudge
from refcal.records import REFUSAL_SIDE, Verdict
from refcal.redact import redact
from refcal.store.database import open_database, transaction
from refcal.watch.alerts import Alert, AlertSample, Outbox, Sink
from refcal.watch.control import Monitor, WindowCount
from refcal.watch.exchanges import Exchange, FieldMap, LineError, parse_field_map, parse_line
from refcal.watch.ledger import Ledger
from refcal.watch.refusal_class import RefusalClass, RefusalClassifier
from refcal.watch.sweep_state import (
    LIKELY_FALSE,
    MAX_RAW_CHARS,
    MAX_SAMPLE_CHARS,
    OTHER,
    REFUSAL,
    SCHEMA,
    STATE_JSON,
    STATE_VERSION,
    OpenWindow,
    PassReport,
    SweepJudge,
    SweepSettings,
    SweepState,
    Totals,
)
from refcal.watch.tail import MAX_LINE_BYTES, Batch, Tail, save_cursors

__all__ = [
    "LIKELY_FALSE",
    "OTHER",
    "REFUSAL",
    "SCHEMA",
    "STATE_VERSION",
    "OpenWindow",
    "PassReport",
    "Sweep",
    "SweepJudge",
    "SweepSettings",
    "SweepState",
    "Totals",
    "connect",
    "make_sweep_judge",
]


def make_sweep_judge(name: SweepJudge) -> Judge:
    """`markers`: the markers lane alone (its literal search skips most answers). `cascade`: the default judge,
    whose markers lane is the same lane."""
    if name == "markers":
        return MarkersJudge()
    from refcal.judges import make_judge

    return make_judge("cascade")


def connect(path: Path) -> sqlite3.Connection:
    return open_database(path, SCHEMA)


@dataclass(slots=True)
class _Judged:
    """One judged exchange of a batch."""

    exchange: Exchange
    file: str
    line: int
    at: str
    verdict: Verdict
    refusal_class: RefusalClass | None = None

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"


class Sweep:
    """One sweep over some logs into one store. `run_pass()` reads what is new; call it as often as wanted.

    Args:
        settings: what to watch.
        judge: a Judge (default: make_sweep_judge(settings.judge)).
        classifier: refusal classes (default: built from the shipped benches on first use).
        sinks: where alerts go (refcal.watch.alerts); alerts stay in the outbox until every sink has them.
    """

    def __init__(self, settings: SweepSettings, judge: Judge | None = None,
                 classifier: RefusalClassifier | None = None, sinks: Sequence[Sink] = ()) -> None:
        self.settings = settings
        self.fields: FieldMap = parse_field_map(settings.fields)
        self.judge = judge if judge is not None else make_sweep_judge(settings.judge)  # fails before any lock
        self._lock = _hold_lock(settings.store, settings.name)
        self.db = connect(settings.store)
        self.tail = Tail(self.db, settings.logs, siblings=settings.rotated)
        self.classifier = classifier if classifier is not None else RefusalClassifier()
        self.sinks = list(sinks)
        self.outbox = Outbox(settings.store)
        self.ledger = Ledger(settings.store)
        self._pool_writes: list[tuple[str, int, str]] = []
        """Review-pool slots filled by the batch being consumed (written with it)."""
        self._segment_names: dict[tuple[str | None, str | None], list[str]] = {}
        self.state = self._load_state()
        self._monitors: dict[str, Monitor] = {key: Monitor.from_state(value)
                                              for key, value in self.state.monitors.items()}

    def close(self) -> None:
        self.tail.close()
        self.outbox.close()
        self.ledger.close()
        self.db.close()
        self._lock.close()  # releases the flock

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- a pass ------------------------------------------------------------------------------------

    def run_pass(self, stop: Callable[[], bool] = lambda: False) -> PassReport:
        """Read every new complete line (batch by batch, each committed), hand over alerts, write the review
        sample on every review_every-th pass, deliver alerts. `stop()` is asked between batches."""
        report = PassReport(number=self.state.passes + 1)
        before = (self.state.totals.refusals, self.state.totals.likely_false)
        self._hand_over(report)  # what a killed predecessor committed but did not hand over
        for batch in self.tail.poll():
            self._consume(batch, report)
            self._hand_over(report)
            if stop():
                report.stopped = True
                break
        if not report.stopped:
            self._finish_pass(report)
        report.refusals = self.state.totals.refusals - before[0]
        report.likely_false = self.state.totals.likely_false - before[1]
        report.delivered = self.outbox.deliver(self.sinks) if self.sinks else 0
        return report

    def _consume(self, batch: Batch, report: PassReport) -> None:
        now = utc_now()
        quarantine: list[tuple[str, int, str, bytes]] = []
        parsed: list[tuple[Exchange, int]] = []
        totals = self.state.totals
        totals.lines += len(batch.lines)
        report.lines += len(batch.lines)
        for offset, raw in enumerate(batch.lines):
            line = batch.first_lineno + offset
            if offset in batch.too_long:
                quarantine.append((batch.name, line, f"line over {MAX_LINE_BYTES:,} bytes", raw))
                continue
            if not raw.strip():
                totals.blank += 1
                continue
            try:
                parsed.append((parse_line(raw, self.fields), line))
            except LineError as error:
                quarantine.append((batch.name, line, str(error), raw))
        judged = self._judge(parsed, batch.name, now)
        for item in judged:
            self._count(item)
        totals.malformed += len(quarantine)
        report.malformed += len(quarantine)
        report.exchanges += len(judged)
        report.notes.extend(batch.notes)
        for gap in batch.gaps:  # lines gone before they were read: alerted on, never passed over
            totals.gaps += 1
            report.gaps += 1
            self.state.pending_alerts.append(Alert.from_gap(gap))
        self._commit(batch, quarantine)

    def _judge(self, parsed: list[tuple[Exchange, int]], source: str, now: str) -> list[_Judged]:
        answered = [(exchange, line) for exchange, line in parsed if exchange.response is not None]
        self.state.totals.errors += len(parsed) - len(answered)
        verdicts = judge_rows(self.judge, [(exchange.prompt, exchange.response or "") for exchange, _ in answered])
        judged = [_Judged(exchange, source, line, exchange.time or now, verdict)
                  for (exchange, line), verdict in zip(answered, verdicts, strict=True)]
        refused = [item for item in judged if item.verdict.label in REFUSAL_SIDE]
        if refused:
            classes = self.classifier.classify_many([item.exchange.prompt for item in refused],
                                                    [item.exchange.risk for item in refused])
            for item, found in zip(refused, classes, strict=True):
                item.refusal_class = found
        return judged

    # --- counting ------------------------------------------------------------------------------------

    def _segments(self, exchange: Exchange) -> list[str]:
        key = (exchange.route, exchange.klass)
        segments = self._segment_names.get(key)
        if segments is None:
            segments = self._segment_names[key] = self._name_segments(exchange)
        return segments

    def _name_segments(self, exchange: Exchange) -> list[str]:
        segments = ["all"]
        if exchange.route is not None:
            segments.append("route:" + self._capped("route", exchange.route))
        if exchange.klass is not None:
            name = self._capped("class", exchange.klass)
            segments.append(name if name != "all" and not name.startswith("route:") else f"class:{name}")
        return segments

    def _capped(self, kind: str, name: str) -> str:
        known = self.state.segments.setdefault(kind, [])
        if name in known:
            return name
        if len(known) < self.settings.max_segments:
            known.append(name)
            return name
        return OTHER

    def _count(self, item: _Judged) -> None:
        totals = self.state.totals
        totals.exchanges += 1
        label = item.verdict.label
        refused = label in REFUSAL_SIDE
        likely_false = item.refusal_class == "likely_false"
        if label == "undetermined":
            totals.undetermined += 1
        elif refused:
            totals.refusals += 1
            totals.likely_false += likely_false
            totals.warranted += item.refusal_class == "warranted"
            totals.unclear += item.refusal_class == "unclear"
        segments = self._segments(item.exchange)
        for segment in segments:
            window = self.state.windows.get(segment)
            if window is None:
                window = self.state.windows[segment] = OpenWindow()
            if window.seen == 0:
                window.start = item.at
            window.seen += 1
            window.end = item.at
            if label == "undetermined":
                window.undetermined += 1
            else:
                window.n += 1
                if refused:
                    window.refusals += 1
                    self._keep_sample(window, REFUSAL, item)
                    if likely_false:
                        window.likely_false += 1
                        self._keep_sample(window, LIKELY_FALSE, item)
            if window.seen >= self.settings.window:
                self._close(segment, window)
        if refused:
            self._offer_for_review(item, segments)

    def _keep_sample(self, window: OpenWindow, metric: str, item: _Judged) -> None:
        kept = window.samples.setdefault(metric, [])
        if len(kept) < self.settings.samples:
            kept.append(AlertSample(request=self._text(item.exchange.prompt),
                                    response=self._text(item.exchange.response or ""),
                                    refusal_class=item.refusal_class, source=item.source, at=item.at))

    def _text(self, text: str) -> str:
        text = text[:MAX_SAMPLE_CHARS]
        return text if self.settings.keep_text else redact(text)

    def _close(self, segment: str, window: OpenWindow) -> None:
        """Feed the window's two counts to their monitors; keep chart points and alerts to hand over."""
        self.state.totals.windows += 1
        for metric, events in ((REFUSAL, window.refusals), (LIKELY_FALSE, window.likely_false)):
            count = WindowCount(metric=metric, segment=segment, index=window.index, start=window.start,
                                end=window.end, events=events, n=window.n)
            observation = self._monitor(metric, segment).observe(count)
            self.state.pending_points.append(observation.point)
            for breach in observation.breaches:
                self.state.totals.breaches += 1
                self.state.pending_alerts.append(Alert.from_breach(
                    breach, window.samples.get(metric, []), max_samples=max(self.settings.samples, 1),
                    keep_text=self.settings.keep_text))
        self.state.windows[segment] = OpenWindow(index=window.index + 1)

    def _monitor(self, metric: str, segment: str) -> Monitor:
        key = f"{metric}|{segment}"
        monitor = self._monitors.get(key)
        if monitor is None:
            monitor = self._monitors[key] = Monitor(metric, segment, baseline_windows=self.settings.baseline_windows)
        return monitor

    # --- review pool -------------------------------------------------------------------------------------

    def _offer_for_review(self, item: _Judged, segments: list[str]) -> None:
        """Reservoir sampling per stratum (refusal class × the exchange's own segment), committed with the batch."""
        stratum = f"{item.refusal_class or 'unclassed'}|{'|'.join(segments[1:]) or 'all'}"
        seen = self.state.review_seen.get(stratum, 0) + 1
        self.state.review_seen[stratum] = seen
        size = self.settings.review_size
        slot = seen - 1 if seen <= size else random.Random(f"{self.settings.name}/{stratum}/{seen}").randrange(seen)
        if slot < size:
            self._pool_writes.append((stratum, slot, self._review_row(item, stratum)))

    def _review_row(self, item: _Judged, stratum: str) -> str:
        messages = [{"role": message.get("role"), "content": self._text(_content(message.get("content")))}
                    for message in item.exchange.messages if isinstance(message, Mapping)]
        return json.dumps({"source": item.source, "at": item.at, "stratum": stratum, "messages": messages,
                           "prompt": self._text(item.exchange.prompt),
                           "response": self._text(item.exchange.response or ""),
                           "verdict": item.verdict.model_dump(mode="json"), "refusal_class": item.refusal_class,
                           "model": item.exchange.model}, ensure_ascii=False)

    # --- committing and handing over -----------------------------------------------------------------------

    def _commit(self, batch: Batch, quarantine: list[tuple[str, int, str, bytes]]) -> None:
        now = utc_now()
        with transaction(self.db):
            save_cursors(self.db, batch)
            self.db.executemany("INSERT INTO watch_quarantine VALUES (?, ?, ?, ?, ?, ?)",
                                [(self.settings.name, file, line, reason, self._raw(raw), now)
                                 for file, line, reason, raw in quarantine])
            self.db.executemany("INSERT OR REPLACE INTO watch_review_pool VALUES (?, ?, ?, ?)",
                                [(self.settings.name, *write) for write in self._pool_writes])
            self._save_state()
        self._pool_writes = []

    def _raw(self, raw: bytes) -> str:
        text = raw[:MAX_RAW_CHARS].decode("utf-8", errors="replace")
        return text if self.settings.keep_text else redact(text)

    def _save_state(self) -> None:
        self.state.monitors = {key: monitor.state() for key, monitor in self._monitors.items()}
        self.db.execute("INSERT OR REPLACE INTO watch_state VALUES (?, ?, ?)",
                        (self.settings.name, STATE_JSON.dump_json(self.state).decode(), utc_now()))

    def _load_state(self) -> SweepState:
        row = self.db.execute("SELECT data FROM watch_state WHERE name = ?", (self.settings.name,)).fetchone()
        if row is None:
            return SweepState()
        state = STATE_JSON.validate_json(row[0])
        if state.version != STATE_VERSION:
            raise ValueError(f"sweep state '{self.settings.name}' in {self.settings.store} has version "
                             f"{state.version}, not {STATE_VERSION}")
        return state

    def _hand_over(self, report: PassReport) -> None:
        """Chart points and alerts committed with their lines go to the ledger and the outbox (idempotent
        there), then leave the state (committed with the next batch, or at the end of the pass)."""
        state = self.state
        if state.pending_points:
            self.ledger.record_windows(state.pending_points)
            report.windows += len(state.pending_points) // 2
        for alert in state.pending_alerts:
            self.outbox.put(alert)
            if alert.breach is not None:  # a gap alert has no drift to put in the ledger
                self.ledger.open(alert.breach, [sample.source for sample in alert.samples if sample.source])
                report.breaches.append(alert.breach)
        state.pending_points, state.pending_alerts = [], []

    def _finish_pass(self, report: PassReport) -> None:
        """Count the pass; every review_every-th writes the review run first (idempotent by its id)."""
        number = self.state.passes + 1
        if number % self.settings.review_every == 0:
            report.review_run = self._write_review_run(number)
        with transaction(self.db):
            if number % self.settings.review_every == 0:
                self.db.execute("DELETE FROM watch_review_pool WHERE name = ?", (self.settings.name,))
                self.state.review_seen = {}
            self.state.passes = number
            self._save_state()

    def _write_review_run(self, number: int) -> str | None:
        from refcal.watch.review_run import write_review_run

        rows = self.db.execute("SELECT stratum, slot, data FROM watch_review_pool WHERE name = ? ORDER BY stratum, "
                               "slot", (self.settings.name,)).fetchall()
        run_id = write_review_run(self.settings, number, [json.loads(data) for _, _, data in rows],
                                  self.judge.name, self.judge.version)
        if run_id is not None:
            self.state.totals.review_runs += 1
        return run_id

    def quarantined(self) -> list[dict[str, Any]]:
        """Quarantined lines of this sweep, oldest first."""
        rows = self.db.execute("SELECT file, line, reason, raw, quarantined_at FROM watch_quarantine WHERE name = ? "
                               "ORDER BY rowid", (self.settings.name,))
        return [{"file": file, "line": line, "reason": reason, "raw": raw, "at": at}
                for file, line, reason, raw, at in rows]


def _hold_lock(store: Path, name: str) -> Any:
    """One sweep per name and store at a time: two would read the same lines and count them twice."""
    store.parent.mkdir(parents=True, exist_ok=True)
    handle = open(store.parent / f".{store.name}.watch-{name}.lock", "a+")  # noqa: SIM115 - held while sweeping
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(f"another sweep named '{name}' is running on {store} (stop it, or use --name)") from None
    return handle


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part.get("text", "") for part in value if isinstance(part, Mapping)
                       and isinstance(part.get("text"), str))
    return ""
