"""The run database: SQLite in WAL mode. Each attempt (with its verdict) is committed the moment it
lands, so a killed drill loses nothing it finished, and `--resume` sends only what is missing.

Tables: `runs` (one row per drill: bench, target fingerprint, judge, plan), `attempts` (one row per
variant per run; the primary key makes a second send of the same variant an error, not a silent
duplicate), `labels` (human verdicts on attempts, one per reviewer per attempt), `judge_agreement` and
`cache` (responses keyed by target fingerprint + request).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from refcal.clock import utc_now
from refcal.errors import StoreError, StoreFileError
from refcal.records import (
    Attempt,
    Completion,
    HumanLabel,
    MeasuredAgreement,
    RunRecord,
    RunStatus,
)
from refcal.store.database import Database

_Row = TypeVar("_Row", bound=BaseModel)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    variant_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    label TEXT,
    is_error INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, variant_id)
);
CREATE TABLE IF NOT EXISTS judge_agreement (
    judge TEXT NOT NULL,
    version TEXT NOT NULL,
    measured_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    run_id TEXT NOT NULL,
    variant_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    labelled_at TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, variant_id, reviewer),
    FOREIGN KEY (run_id, variant_id) REFERENCES attempts(run_id, variant_id)
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


class Store(Database):
    """A handle on one run database file."""

    SCHEMA = SCHEMA
    CORE = ("runs", "attempts")

    def create_run(self, run: RunRecord) -> RunRecord:
        self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)",
                         (run.run_id, run.created_at, run.status, run.model_dump_json()))
        return run

    def get_run(self, run_id: str) -> RunRecord:
        row = self._db.execute("SELECT data, status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run '{run_id}' in {self.path}")
        return self._parse(RunRecord, row[0], f"run '{run_id}'").model_copy(update={"status": row[1]})

    def list_runs(self) -> list[RunRecord]:
        rows = self._db.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()
        return [self.get_run(row[0]) for row in rows]

    def set_status(self, run_id: str, status: RunStatus) -> None:
        self._db.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))

    def record(self, run_id: str, attempt: Attempt, cache_key: str | None = None) -> None:
        """Commit one attempt, and its response to the cache, in one transaction."""
        self.commit([attempt_statements(run_id, attempt, cache_key)])

    def commit(self, groups: list[list[Statement]]) -> None:
        """Run several attempts' statements in one transaction (group commit)."""
        with self._transaction():
            for statements in groups:
                for sql, parameters in statements:
                    self._db.execute(sql, parameters)

    def record_agreement(self, measured: MeasuredAgreement) -> None:
        """Keep a judge's agreement with a label set, so later receipts can carry it."""
        self._db.execute("INSERT INTO judge_agreement VALUES (?, ?, ?, ?)",
                         (measured.judge, measured.version, measured.measured_at, measured.model_dump_json()))

    def latest_agreement(self, judge: str, version: str) -> MeasuredAgreement | None:
        row = self._db.execute("SELECT data FROM judge_agreement WHERE judge = ? AND version = ? "
                               "ORDER BY measured_at DESC LIMIT 1", (judge, version)).fetchone()
        return self._parse(MeasuredAgreement, row[0], f"the agreement of {judge} {version}") if row else None

    def add_label(self, label: HumanLabel) -> None:
        """Commit one reviewer's label on one attempt (a second label by the same reviewer replaces the first)."""
        self.add_labels([label])

    def add_labels(self, labels: Sequence[HumanLabel]) -> None:
        """Commit labels all together or not at all: every attempt they name must be in this database."""
        with self._transaction():
            for label in labels:
                exists = self._db.execute("SELECT 1 FROM attempts WHERE run_id = ? AND variant_id = ?",
                                          (label.run_id, label.variant_id)).fetchone()
                if exists is None:
                    raise StoreError(f"no attempt '{label.variant_id}' in run '{label.run_id}' of {self.path}")
                self._db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?)",
                                 (label.run_id, label.variant_id, label.reviewer, label.labelled_at,
                                  label.model_dump_json()))

    def labels(self, run_ids: Iterable[str] | None = None, reviewer: str | None = None) -> list[HumanLabel]:
        """Every stored label (of the given runs, by the given reviewer), oldest first."""
        rows = self._db.execute("SELECT run_id, data FROM labels WHERE ? IS NULL OR reviewer = ? "
                                "ORDER BY labelled_at, rowid", (reviewer, reviewer)).fetchall()
        wanted = set(run_ids) if run_ids is not None else None
        return [self._parse(HumanLabel, data, f"a label of run '{run_id}'") for run_id, data in rows
                if wanted is None or run_id in wanted]

    def attempt(self, run_id: str, variant_id: str) -> Attempt:
        row = self._db.execute("SELECT data FROM attempts WHERE run_id = ? AND variant_id = ?",
                               (run_id, variant_id)).fetchone()
        if row is None:
            raise StoreError(f"no attempt '{variant_id}' in run '{run_id}' of {self.path}")
        return self._parse(Attempt, row[0], f"attempt '{variant_id}' of run '{run_id}'")

    def cached(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT data FROM cache WHERE key = ?", (key,)).fetchone()
        return self._parse(Completion, row[0], "a cached response") if row else None

    def done_variant_ids(self, run_id: str) -> set[str]:
        rows = self._db.execute("SELECT variant_id FROM attempts WHERE run_id = ?", (run_id,))
        return {row[0] for row in rows}

    def attempts(self, run_id: str) -> Iterator[Attempt]:
        rows = self._db.execute("SELECT data FROM attempts WHERE run_id = ? ORDER BY rowid", (run_id,))
        for (data,) in rows:
            yield self._parse(Attempt, data, f"an attempt of run '{run_id}'")

    def count_attempts(self, run_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM attempts WHERE run_id = ?", (run_id,)).fetchone()[0]

    def _parse(self, model: type[_Row], data: object, what: str) -> _Row:
        """A stored row as its model; a row that is not what refcal wrote (edited, damaged) is a StoreFileError
        naming the database, the row and the first bad field, never a pydantic traceback."""
        try:
            return model.model_validate_json(data if isinstance(data, str | bytes) else str(data))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            reason = "not JSON" if first["type"] == "json_invalid" else first["msg"]
            raise StoreFileError(f"damaged row: {what} cannot be read ({reason})", path=str(self.path),
                                 field=field) from None



Statement = tuple[str, tuple[Any, ...]]


def attempt_statements(run_id: str, attempt: Attempt, cache_key: str | None) -> list[Statement]:
    """The SQL that records one attempt, and its response in the cache when it is a fresh success."""
    label = attempt.verdict.label if attempt.verdict else None
    statements: list[Statement] = [
        ("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?)",
         (run_id, attempt.variant.id, attempt.variant.item_id, label, int(attempt.is_error),
          attempt.model_dump_json()))]
    if cache_key is not None and not attempt.is_error and not attempt.cached:
        completion = Completion(text=attempt.response or "", finish_reason=attempt.finish_reason,
                                prompt_tokens=attempt.prompt_tokens, completion_tokens=attempt.completion_tokens,
                                latency_s=attempt.latency_s or 0.0, retries=attempt.retries)
        statements.append(("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)",
                           (cache_key, completion.model_dump_json(), utc_now())))
    return statements


class GroupCommitWriter:
    """Commits attempts from a thread with its own connection, off the event loop.

    `record_async` returns only once its attempt is committed, so "committed as it completes" holds;
    attempts that land while a commit is running share the next one, which keeps the cost per attempt
    low when hundreds land each second. A group that fails is retried one attempt at a time, so only
    the offending attempt's caller sees the error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="refcal-store-writer", daemon=True)
        self._thread.start()

    async def record_async(self, run_id: str, attempt: Attempt, cache_key: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(attempt_statements(run_id, attempt, cache_key), future, loop))
        await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        with Store(self.path) as store:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                while True:
                    try:
                        pending = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if pending is None:
                        stopping = True
                        break
                    group.append(pending)
                self._commit(store, group)

    @staticmethod
    def _commit(store: Store, group: list[_Pending]) -> None:
        try:
            store.commit([pending.statements for pending in group])
            outcomes: list[BaseException | None] = [None] * len(group)
        except sqlite3.Error:
            outcomes = []
            for pending in group:
                try:
                    store.commit([pending.statements])
                    outcomes.append(None)
                except sqlite3.Error as error:
                    outcomes.append(StoreError(f"could not record {pending.statements[0][1][1]}: {error}"))
        for pending, outcome in zip(group, outcomes, strict=True):
            pending.loop.call_soon_threadsafe(_settle, pending.future, outcome)


@dataclass
class _Pending:
    statements: list[Statement]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():  # the waiting worker was cancelled
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)
