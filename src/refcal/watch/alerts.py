"""Alerts for control-limit breaches: what a breach says (with a redacted sample of the exchanges behind it),
a durable outbox in the run database, and the sinks that deliver it (terminal, a JSON-lines file, a webhook).

The outbox makes delivery at-least-once: `Outbox.put` commits the alert before anything is sent, and an
alert stays pending until every sink of a `deliver` call has taken it, so a webhook that is down when the
breach happens gets the alert on a later `deliver` (the next sweep), and a crash between sending and marking
may send it twice (alerts carry a stable id for the receiver to deduplicate). Tables, in the store's file, on a
connection of their own:

    watch_outbox             one row per alert: id, created_at, status (pending | delivered | failed), JSON
    watch_outbox_deliveries  one row per alert and sink: status, tries, last error

A sink refuses permanently (HTTP 4xx other than 408/429) or transiently (connection errors, timeouts, 5xx,
408, 429). A permanent refusal is recorded, the alert is kept and marked failed, and that sink is not tried
again for it; a transient one leaves the alert pending. Sink names are what the outbox stores: a webhook is
named by scheme, host and a digest of its URL, never the URL itself (webhook URLs often carry tokens).

Sample text is redacted with `refcal.redact.redact` unless the alert is built with `keep_text=True`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from refcal.clock import utc_now
from refcal.redact import redact
from refcal.store.database import Database
from refcal.watch.control import Breach

AlertStatus = Literal["pending", "delivered", "failed"]
MAX_SAMPLES = 5
MAX_SAMPLE_CHARS = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_outbox (
    alert_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_outbox_deliveries (
    alert_id TEXT NOT NULL REFERENCES watch_outbox(alert_id),
    sink TEXT NOT NULL,
    status TEXT NOT NULL,
    tries INTEGER NOT NULL,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (alert_id, sink)
);
"""


class AlertSample(BaseModel):
    """One exchange behind a breach, as an alert shows it."""

    request: str
    """The request's last user message (redacted unless kept)."""
    response: str
    """The model's reply (redacted unless kept)."""
    refusal_class: str | None = None
    """'likely_false', 'warranted' or 'unclear' when the sweep classed the refusal."""
    source: str | None = None
    """Where it was read: 'file:line'."""
    at: str | None = None
    """The exchange's time, when the log has one."""


class LogGap(BaseModel):
    """Bytes of a followed log gone before the sweep read them (refcal.watch.tail_state.Gap, as alerts carry it)."""

    gap_id: str
    watched: str
    """The followed path."""
    file: str
    """The file that held them, where it was last seen."""
    offset: int
    """Bytes of it read before the gap."""
    line: int
    """Lines of it read before the gap."""
    min_bytes: int
    """Bytes known to be lost (the rest of what it held when last seen)."""
    lost_bytes: int | None = None
    """The exact loss, where knowable."""
    lost_lines: int | None = None
    """Lines lost, where knowable."""
    reason: str
    found_at: str


class Alert(BaseModel):
    """A breach and a few exchanges behind it — or a gap in a followed log; the unit the outbox keeps and the
    sinks deliver. Exactly one of `breach` and `gap` is set."""

    id: str
    """Stable for a breach (metric, segment, rule, window, detection time) or a gap (its id): putting it twice
    keeps one."""
    created_at: str
    breach: Breach | None = None
    gap: LogGap | None = None
    samples: list[AlertSample] = []
    redacted: bool = True
    """False only when built with keep_text."""

    @classmethod
    def from_breach(cls, breach: Breach, samples: Sequence[AlertSample | Mapping[str, Any]] = (), *,
                    max_samples: int = MAX_SAMPLES, keep_text: bool = False) -> Alert:
        """The alert for `breach` with up to `max_samples` samples, redacted unless `keep_text`."""
        chosen = [AlertSample.model_validate(sample) for sample in list(samples)[:max_samples]]
        if not keep_text:
            chosen = [_redacted(sample) for sample in chosen]
        return cls(id=alert_id(breach), created_at=utc_now(), breach=breach, samples=chosen, redacted=not keep_text)

    @classmethod
    def from_gap(cls, gap: Any) -> Alert:
        """The alert for a gap found by the tail (a refcal.watch.tail_state.Gap)."""
        found = LogGap(gap_id=gap.gap_id, watched=gap.watched, file=gap.name, offset=gap.offset, line=gap.lineno,
                       min_bytes=gap.min_bytes, lost_bytes=gap.lost_bytes, lost_lines=gap.lost_lines, reason=gap.reason,
                       found_at=gap.found_at)
        return cls(id="alert-" + gap.gap_id, created_at=utc_now(), gap=found)

    def text(self) -> str:
        """One line for a person: which rate crossed which limit, since when — or which log lost what."""
        if self.gap is not None:
            gap = self.gap
            amount = (f"{gap.lost_bytes:,} bytes" if gap.lost_bytes is not None
                      else f"at least {gap.min_bytes:,} bytes" if gap.min_bytes else "an unknown number of bytes")
            lines = f" ({gap.lost_lines:,} lines)" if gap.lost_lines is not None else ""
            return (f"log gap: {gap.file} (followed as {gap.watched}): {gap.reason}; {amount}{lines} after line "
                    f"{gap.line} (byte {gap.offset:,}) lost unread; found {gap.found_at}")
        breach = self.breach
        assert breach is not None, "an alert holds a breach or a gap"
        return (f"refusal drift: {breach.metric}/{breach.segment} window {breach.index}: rate {breach.rate:.1%} "
                f"above limit {breach.limit:.1%} (baseline {breach.baseline:.1%}, {breach.rule}); "
                f"onset {breach.onset} (window {breach.onset_index}), detected {breach.detected_at}")


def alert_id(breach: Breach) -> str:
    key = "|".join((breach.metric, breach.segment, breach.rule, str(breach.index), breach.detected_at))
    return "alert-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _redacted(sample: AlertSample) -> AlertSample:
    return sample.model_copy(update={
        "request": redact(sample.request[:MAX_SAMPLE_CHARS]), "response": redact(sample.response[:MAX_SAMPLE_CHARS]),
        "source": redact(sample.source) if sample.source else sample.source})


@dataclass(frozen=True)
class DeliveryResult:
    """What one sink made of one alert."""

    delivered: bool
    permanent: bool = False
    """A refusal that retrying cannot fix (HTTP 4xx): recorded, not retried."""
    tries: int = 1
    error: str | None = None


class Sink(Protocol):
    name: str
    """Stable and secret-free: the outbox keys deliveries by it."""

    def send(self, alert: Alert) -> DeliveryResult: ...


class TerminalSink:
    """Prints alerts on a rich console (stderr by default), markup escaped."""

    name = "terminal"

    def __init__(self, console: Any | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)

    def send(self, alert: Alert) -> DeliveryResult:
        from rich.markup import escape

        self.console.print(f"[b red]ALERT[/b red] {escape(alert.text())}", soft_wrap=True, highlight=False)
        for sample in alert.samples:
            where = f"{sample.source}: " if sample.source else ""
            klass = f" [{sample.refusal_class}]" if sample.refusal_class else ""
            self.console.print(escape(f"  {where}{sample.request[:200]!r} → {sample.response[:200]!r}{klass}"),
                               soft_wrap=True, highlight=False)
        return DeliveryResult(delivered=True)


class JsonlSink:
    """Appends each alert as one JSON line and fsyncs, so a delivered alert survives a crash."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"jsonl:{self.path.resolve()}"

    def send(self, alert: Alert) -> DeliveryResult:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(alert.model_dump_json() + "\n")
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            return DeliveryResult(delivered=False, error=f"{self.path}: {error.strerror or error}")
        return DeliveryResult(delivered=True)


class WebhookSink:
    """POSTs `{"text": one line, "alert": {...}}` (Slack-style `text`) with httpx, retrying transient failures
    `tries` times with exponential backoff (backoff, 2·backoff, … capped at 30 s)."""

    def __init__(self, url: str, tries: int = 5, backoff: float = 0.5, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a webhook needs an http(s) URL with a host")
        if tries < 1 or backoff < 0:
            raise ValueError("a webhook needs tries >= 1 and backoff >= 0")
        self.url, self.tries, self.backoff, self.timeout, self.transport = url, tries, backoff, timeout, transport
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
        port = f":{parts.port}" if parts.port else ""
        self.name = f"webhook:{parts.scheme}://{parts.hostname}{port}#{digest}"

    def send(self, alert: Alert) -> DeliveryResult:
        body = {"text": alert.text(), "alert": alert.model_dump(mode="json")}
        error = "not sent"
        with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
            for attempt in range(1, self.tries + 1):
                try:
                    response = client.post(self.url, json=body, headers={"Idempotency-Key": alert.id})
                except httpx.TransportError as failure:  # connect errors, timeouts, resets
                    error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
                else:
                    status = response.status_code
                    if status < 300:
                        return DeliveryResult(delivered=True, tries=attempt)
                    error = f"HTTP {status}"
                    if 400 <= status < 500 and status not in (408, 429):
                        return DeliveryResult(delivered=False, permanent=True, tries=attempt, error=error)
                if attempt < self.tries:
                    time.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)))
        return DeliveryResult(delivered=False, tries=self.tries, error=error)


class Outbox(Database):
    """Alerts kept in the store's database until every sink has them."""

    SCHEMA = SCHEMA

    def put(self, alert: Alert) -> bool:
        """Keep `alert` until delivered; False when the same alert (same id) is already kept."""
        cursor = self._db.execute("INSERT OR IGNORE INTO watch_outbox VALUES (?, ?, 'pending', ?)",
                                  (alert.id, alert.created_at, alert.model_dump_json()))
        return cursor.rowcount == 1

    def deliver(self, sinks: Sequence[Sink]) -> int:
        """Send every pending alert to each sink that has not taken it yet; the number of alerts that every
        sink has now taken (delivered in this call). Alerts with a sink still failing stay pending."""
        delivered = 0
        for alert in self.alerts("pending") if sinks else []:
            outcomes = [self._deliver_one(alert, sink) for sink in sinks]
            if all(outcome == "delivered" for outcome in outcomes):
                status: AlertStatus = "delivered"
                delivered += 1
            elif "pending" in outcomes:
                continue
            else:
                status = "failed"
            self._db.execute("UPDATE watch_outbox SET status = ? WHERE alert_id = ?", (status, alert.id))
        return delivered

    def _deliver_one(self, alert: Alert, sink: Sink) -> str:
        row = self._db.execute("SELECT status, tries FROM watch_outbox_deliveries WHERE alert_id = ? AND sink = ?",
                               (alert.id, sink.name)).fetchone()
        if row is not None and row[0] in ("delivered", "failed"):
            return row[0]
        result = sink.send(alert)
        status = "delivered" if result.delivered else "failed" if result.permanent else "pending"
        tries = (row[1] if row else 0) + result.tries
        self._db.execute("INSERT OR REPLACE INTO watch_outbox_deliveries VALUES (?, ?, ?, ?, ?, ?)",
                         (alert.id, sink.name, status, tries, result.error, utc_now()))
        return status

    def alerts(self, status: AlertStatus | None = None) -> list[Alert]:
        """Kept alerts, oldest first, optionally of one status."""
        query = "SELECT data FROM watch_outbox" + (" WHERE status = ?" if status else "") + " ORDER BY created_at"
        return [Alert.model_validate_json(row[0]) for row in self._db.execute(query, (status,) if status else ())]

    def status(self, alert_id: str) -> AlertStatus | None:
        row = self._db.execute("SELECT status FROM watch_outbox WHERE alert_id = ?", (alert_id,)).fetchone()
        return row[0] if row else None

    def deliveries(self, alert_id: str) -> dict[str, dict[str, Any]]:
        """Per sink: status, tries and the last error, for one alert."""
        rows = self._db.execute("SELECT sink, status, tries, last_error, updated_at FROM watch_outbox_deliveries "
                                "WHERE alert_id = ?", (alert_id,))
        return {sink: {"status": status, "tries": tries, "last_error": error, "updated_at": updated}
                for sink, status, tries, error, updated in rows}

