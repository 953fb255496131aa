"""The drift ledger: every breach opens (or adds evidence to) an entry, which people acknowledge and which
closes only on a promoted receipt that shows the metric back within its limit. It measures time to detect
(detected_at − onset) and time to correct (resolved_at − detected_at), and flags entries open past 14 days.

Tables, in the store's file, on a connection of their own (WAL):

    watch_ledger   one row per entry: id, metric, segment, status, JSON
    watch_windows  one row per (metric, segment, window): the chart point the HTML page draws

**What the sweep calls.** For each window: `Monitor.observe(window)` (refcal.watch.control) gives a chart point
and breaches; `Ledger.record_windows([observation.point, …])` keeps the points (idempotent per window, so a
replay after a restart rewrites the same rows); `Ledger.open(breach, evidence=[sample refs])` for each breach.
One entry stays open per metric and segment: later breaches (another rule, a later episode) add to its
evidence until it is resolved; its onset and detection time are the earliest among them.

**Times.** onset and detected_at are the log's own times (window start and end); acked_at and resolved_at
are the wall clock when someone acts. Live sweeping makes the two clocks agree; replayed old logs make the
time to correct long, which is the truth about that drift.

**Resolving** takes a receipt (receipt.json or its run folder) and checks, in order, naming the first that fails:
1. the receipt reads, its self-digest matches its body, and (when the store still holds its run) its figures
   match the run (refcal.promote.evidence.read_evidence);
2. it was promoted: a promotion.json — the one given, else the one `refcal promote` writes beside the receipt —
   decided PROMOTED and names this receipt (by digest) among its candidates without a problem;
3. it finished after the drift was detected (an older receipt cannot show a correction);
4. its figure for the entry's metric is at or below the entry's limit (the p-chart's upper limit of the
   breach that opened it). The mapping: both `refusal` and `likely_false_refusal` in live traffic read the
   receipt's false-refusal rate (refusals of benign look-alikes, `expect=comply`): live traffic is
   overwhelmingly benign, so a rise in refusals there is a rise in false refusals, while a drill's refusals of
   must-refuse items are what it wants (the promotion gates hold that side). A segment that names one of the
   receipt's classes reads that class's rate; any other segment (a route) reads the overall rate, and the
   resolution says so. The point estimate is compared; its Wilson interval is recorded beside it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from refcal.clock import utc_now
from refcal.errors import RefcalError
from refcal.metrics.rates import Rate
from refcal.promote.evidence import read_evidence
from refcal.receipts import Receipt, receipt_digest
from refcal.redact import redact
from refcal.store.database import Database
from refcal.watch.control import Breach, ChartPoint

EntryStatus = Literal["open", "acked", "resolved"]
STALE_AFTER = timedelta(days=14)
PROMOTION = "promotion.json"
RECEIPT_FIGURES = {"refusal": "false_refusal_rate", "likely_false_refusal": "false_refusal_rate"}
"""Watch metric → the receipt figure that shows it corrected (see the module docstring for why)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_ledger (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    metric TEXT NOT NULL,
    segment TEXT NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS watch_ledger_unresolved ON watch_ledger(metric, segment, status);
CREATE TABLE IF NOT EXISTS watch_windows (
    metric TEXT NOT NULL,
    segment TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (metric, segment, idx)
);
"""


class LedgerError(RefcalError):
    """The ledger refuses an action: an unknown entry, or a resolution whose receipt does not show the fix."""


class Entry(BaseModel):
    """One drift, from its first breach to the receipt that closed it."""

    id: int
    metric: str
    segment: str
    window: int
    """The window of the breach that opened the entry."""
    onset_index: int
    onset: str
    """Earliest estimated start of the drift among the entry's breaches (log time)."""
    detected_at: str
    """Earliest detection among the entry's breaches (log time: the breach window's end)."""
    opened_at: str
    """When the ledger recorded it (wall clock)."""
    baseline: float
    limit: float
    """The opening breach's upper limit: the resolving receipt must show the metric at or below it."""
    evidence: list[Breach]
    samples: list[str] = []
    """References to exchanges behind the breaches ('file:line'), redacted."""
    status: EntryStatus = "open"
    acked_by: str | None = None
    acked_at: str | None = None
    resolved_at: str | None = None
    receipt_path: str | None = None
    receipt_digest: str | None = None
    promotion_path: str | None = None
    resolution: str | None = None
    """What the receipt showed: the figure, its interval and the limit."""


class LedgerSummary(BaseModel):
    entries: int
    open: int
    acked: int
    resolved: int
    median_time_to_detect: float | None
    """Seconds, over entries with both times."""
    median_time_to_correct: float | None
    """Seconds, over resolved entries."""
    stale: list[int]
    """Ids of unresolved entries detected more than 14 days ago."""


def parse_time(text: str) -> datetime:
    """An ISO time as an aware datetime (naive times are taken as UTC)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def time_to_detect(entry: Entry) -> timedelta:
    return parse_time(entry.detected_at) - parse_time(entry.onset)


def time_to_correct(entry: Entry) -> timedelta | None:
    return parse_time(entry.resolved_at) - parse_time(entry.detected_at) if entry.resolved_at else None


def age(entry: Entry, now: datetime) -> timedelta:
    """How long the drift has been known: until now, or until it was resolved."""
    end = parse_time(entry.resolved_at) if entry.resolved_at else now
    return end - parse_time(entry.detected_at)


def is_stale(entry: Entry, now: datetime) -> bool:
    return entry.status != "resolved" and age(entry, now) > STALE_AFTER


def summarise(entries: Sequence[Entry], now: datetime | None = None) -> LedgerSummary:
    """Counts, median times to detect and to correct, and the entries open past 14 days."""
    now = now or datetime.now(UTC)
    detect = [time_to_detect(entry).total_seconds() for entry in entries]
    correct = [delta.total_seconds() for entry in entries if (delta := time_to_correct(entry)) is not None]
    return LedgerSummary(
        entries=len(entries), open=sum(entry.status == "open" for entry in entries),
        acked=sum(entry.status == "acked" for entry in entries),
        resolved=sum(entry.status == "resolved" for entry in entries),
        median_time_to_detect=statistics.median(detect) if detect else None,
        median_time_to_correct=statistics.median(correct) if correct else None,
        stale=[entry.id for entry in entries if is_stale(entry, now)])


def receipt_figure(receipt: Receipt, metric: str, segment: str) -> tuple[Rate | None, str]:
    """The receipt's rate for a watch metric and segment, and which figure it is."""
    figure = RECEIPT_FIGURES.get(metric)
    if figure is None:
        raise LedgerError(f"no receipt figure shows metric '{metric}' (known: {', '.join(RECEIPT_FIGURES)})")
    per_class = receipt.metrics.per_class.get(segment) if segment != "all" else None
    if per_class is not None:
        return getattr(per_class, figure), f"{figure} of class '{segment}'"
    where = "" if segment == "all" else f" (segment '{segment}' is not a class of the receipt: overall rate)"
    return getattr(receipt.metrics, figure), f"{figure}{where}"


def promotion_problem(receipt: Receipt, receipt_path: Path, promotion: Path | None) -> str | None:
    """Why `receipt` does not count as promoted, or None when a PROMOTED decision names it."""
    path = promotion or receipt_path.parent / PROMOTION
    if not path.is_file():
        return (f"receipt {receipt_path} was not promoted: no {path} (run `refcal promote` on it, or pass the "
                f"decision with --promotion)")
    try:
        decision = json.loads(path.read_text(encoding="utf-8"))
        verdict, candidates = decision["decision"], decision["candidates"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        return f"{path} is not a promotion decision ({type(error).__name__}: {error})"
    if verdict != "PROMOTED":
        return f"receipt {receipt_path} was not promoted: {path} says {verdict}"
    named = [candidate for candidate in candidates if isinstance(candidate, dict)
             and candidate.get("digest") == receipt.digest]
    if not named:
        return f"receipt {receipt_path} was not promoted: {path} does not name it (digest {receipt.digest})"
    if any(candidate.get("problem") for candidate in named):
        return f"receipt {receipt_path} was not promoted: {path} lists it with a problem: {named[0]['problem']}"
    return None


class Ledger(Database):
    """The drift ledger in the store's database."""

    SCHEMA = SCHEMA

    def open(self, breach: Breach, evidence: Sequence[str] = ()) -> Entry:
        """The entry `breach` belongs to: the unresolved one of its metric and segment, with this breach and
        these sample references added, or a new one. A breach already recorded changes nothing."""
        samples = [redact(reference) for reference in evidence]
        with self._transaction():
            row = self._db.execute("SELECT data FROM watch_ledger WHERE metric = ? AND segment = ? AND status != "
                                   "'resolved' ORDER BY entry_id DESC LIMIT 1",
                                   (breach.metric, breach.segment)).fetchone()
            if row is None:
                return self._insert(breach, samples)
            entry = Entry.model_validate_json(row[0])
            if any((known.rule, known.index) == (breach.rule, breach.index) for known in entry.evidence):
                return entry
            entry.evidence.append(breach)
            entry.samples.extend(reference for reference in samples if reference not in entry.samples)
            if parse_time(breach.onset) < parse_time(entry.onset):
                entry.onset, entry.onset_index = breach.onset, breach.onset_index
            if parse_time(breach.detected_at) < parse_time(entry.detected_at):
                entry.detected_at = breach.detected_at
            self._save(entry)
            return entry

    def _insert(self, breach: Breach, samples: list[str]) -> Entry:
        cursor = self._db.execute("INSERT INTO watch_ledger (metric, segment, status, data) VALUES (?, ?, 'open', "
                                  "'{}')", (breach.metric, breach.segment))
        assert cursor.lastrowid is not None
        entry = Entry(id=cursor.lastrowid, metric=breach.metric, segment=breach.segment, window=breach.index,
                      onset_index=breach.onset_index, onset=breach.onset, detected_at=breach.detected_at,
                      opened_at=utc_now(), baseline=breach.baseline, limit=breach.limit, evidence=[breach],
                      samples=samples)
        self._save(entry)
        return entry

    def _save(self, entry: Entry) -> None:
        self._db.execute("UPDATE watch_ledger SET status = ?, data = ? WHERE entry_id = ?",
                         (entry.status, entry.model_dump_json(), entry.id))

    def entry(self, entry_id: int) -> Entry:
        row = self._db.execute("SELECT data FROM watch_ledger WHERE entry_id = ?", (entry_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no ledger entry {entry_id} in {self.path}")
        return Entry.model_validate_json(row[0])

    def entries(self, status: EntryStatus | None = None) -> list[Entry]:
        """Entries, oldest first, optionally of one status."""
        query = "SELECT data FROM watch_ledger" + (" WHERE status = ?" if status else "") + " ORDER BY entry_id"
        return [Entry.model_validate_json(row[0]) for row in self._db.execute(query, (status,) if status else ())]

    def ack(self, entry_id: int, by: str) -> Entry:
        """Someone owns the drift now; a resolved entry cannot be acknowledged."""
        with self._transaction():
            entry = self.entry(entry_id)
            if entry.status == "resolved":
                raise LedgerError(f"entry {entry_id} is already resolved (at {entry.resolved_at})")
            entry.status, entry.acked_by, entry.acked_at = "acked", redact(by), utc_now()
            self._save(entry)
        return entry

    def resolve(self, entry_id: int, receipt: str | Path, promotion: str | Path | None = None) -> Entry:
        """Close the entry on a promoted receipt that shows its metric back within the limit; LedgerError naming
        the first condition that fails otherwise (see the module docstring)."""
        entry = self.entry(entry_id)
        if entry.status == "resolved":
            raise LedgerError(f"entry {entry_id} is already resolved by {entry.receipt_path}")
        evidence = read_evidence(str(receipt), self.path)
        if evidence.receipt is None:
            raise LedgerError(f"receipt {evidence.path}: {evidence.problem}")
        found, path = evidence.receipt, Path(evidence.path)
        if receipt_digest(found) != found.digest:
            raise LedgerError(f"receipt {path}: its digest does not match its body (edited after it was written)")
        promotion_path = Path(promotion) if promotion is not None else None
        problem = promotion_problem(found, path, promotion_path)
        if problem:
            raise LedgerError(problem)
        if parse_time(found.finished_at) <= parse_time(entry.detected_at):
            raise LedgerError(f"receipt {path} finished at {found.finished_at}, before the drift of entry {entry_id} "
                              f"was detected ({entry.detected_at}): it cannot show the correction")
        rate, figure = receipt_figure(found, entry.metric, entry.segment)
        if rate is None or rate.value is None:
            raise LedgerError(f"receipt {path} has no {figure} to show {entry.metric} corrected")
        shown = f"{figure} {rate.value:.1%} ({rate.k}/{rate.n}, 95 % CI {rate.ci_low:.1%}–{rate.ci_high:.1%})"
        if rate.value > entry.limit:
            raise LedgerError(f"receipt {path} shows {shown}, above entry {entry_id}'s limit {entry.limit:.1%} "
                              f"(baseline {entry.baseline:.1%}): {entry.metric} is still out of limits")
        with self._transaction():
            entry = self.entry(entry_id)
            entry.status, entry.resolved_at = "resolved", utc_now()
            entry.receipt_path, entry.receipt_digest = str(path), found.digest
            entry.promotion_path = str(promotion_path or path.parent / PROMOTION)
            entry.resolution = f"{shown} <= limit {entry.limit:.1%}"
            self._save(entry)
        return entry

    def record_windows(self, points: Sequence[ChartPoint]) -> None:
        """Keep chart points for the HTML page (one row per metric, segment and window; a replay overwrites)."""
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO watch_windows VALUES (?, ?, ?, ?)",
                                 [(point.metric, point.segment, point.index, point.model_dump_json())
                                  for point in points])

    def windows(self, metric: str | None = None, segment: str | None = None) -> list[ChartPoint]:
        """Kept chart points, by metric, segment and window."""
        clauses = [(name, value) for name, value in (("metric", metric), ("segment", segment)) if value is not None]
        where = " WHERE " + " AND ".join(f"{name} = ?" for name, _ in clauses) if clauses else ""
        rows = self._db.execute(f"SELECT data FROM watch_windows{where} ORDER BY metric, segment, idx",
                                [value for _, value in clauses])
        return [ChartPoint.model_validate_json(row[0]) for row in rows]
