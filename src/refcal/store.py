"""The run database: SQLite in WAL mode. Each attempt (with its verdict) is committed the moment it
lands, so a killed drill loses nothing it finished, and `--resume` sends only what is missing.

Tables: `runs` (one row per drill: bench, target fingerprint, judge, plan), `attempts` (one row per
variant per run; the primary key makes a second send of the same variant an error, not a silent
duplicate) and `cache` (responses keyed by target fingerprint + request).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from refcal.attempt import Attempt
from refcal.errors import StoreError
from refcal.targets.base import Completion

RunStatus = Literal["running", "complete", "interrupted"]

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
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunRecord(BaseModel):
    """Everything needed to resume a run and write its receipt, without the original files."""

    run_id: str = Field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%d-%H%M%S-")
                        + uuid.uuid4().hex[:6])
    created_at: str = Field(default_factory=utc_now)
    status: RunStatus = "running"
    bench_name: str
    bench_digest: str
    bench_origin: str | None = None
    items: list[dict[str, Any]]
    """The bench's items as run, so resume needs no file and cannot drift from what was planned."""
    target_spec: str
    """The spec without credentials (an API key is never part of a spec)."""
    api_key_env: str | None = None
    """Name (never value) of the environment variable holding the key."""
    fingerprint: dict[str, Any]
    judge_name: str
    judge_version: str
    limit: int | None = None
    concurrency: int
    use_cache: bool = True
    out_dir: str


class Store:
    """A handle on one run database file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (SIGKILL) with every commit intact; only power loss can
        # drop the last transactions, which resume would then simply re-send.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_run(self, run: RunRecord) -> RunRecord:
        self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)",
                         (run.run_id, run.created_at, run.status, run.model_dump_json()))
        return run

    def get_run(self, run_id: str) -> RunRecord:
        row = self._db.execute("SELECT data, status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"no run '{run_id}' in {self.path}")
        return RunRecord.model_validate_json(row[0]).model_copy(update={"status": row[1]})

    def list_runs(self) -> list[RunRecord]:
        rows = self._db.execute("SELECT run_id FROM runs ORDER BY created_at").fetchall()
        return [self.get_run(row[0]) for row in rows]

    def set_status(self, run_id: str, status: RunStatus) -> None:
        self._db.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))

    def record(self, run_id: str, attempt: Attempt, cache_key: str | None = None) -> None:
        """Commit one attempt, and its response to the cache, in one transaction."""
        label = attempt.verdict.label if attempt.verdict else None
        with self._transaction():
            self._db.execute("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?)",
                             (run_id, attempt.variant.id, attempt.variant.item_id, label,
                              int(attempt.is_error), attempt.model_dump_json()))
            if cache_key is not None and not attempt.is_error and not attempt.cached:
                completion = Completion(text=attempt.response or "", finish_reason=attempt.finish_reason,
                                        prompt_tokens=attempt.prompt_tokens,
                                        completion_tokens=attempt.completion_tokens,
                                        latency_s=attempt.latency_s or 0.0, retries=attempt.retries)
                self._db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)",
                                 (cache_key, completion.model_dump_json(), utc_now()))

    def cached(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT data FROM cache WHERE key = ?", (key,)).fetchone()
        return Completion.model_validate_json(row[0]) if row else None

    def done_variant_ids(self, run_id: str) -> set[str]:
        rows = self._db.execute("SELECT variant_id FROM attempts WHERE run_id = ?", (run_id,))
        return {row[0] for row in rows}

    def attempts(self, run_id: str) -> Iterator[Attempt]:
        rows = self._db.execute("SELECT data FROM attempts WHERE run_id = ? ORDER BY rowid", (run_id,))
        for (data,) in rows:
            yield Attempt.model_validate_json(data)

    def count_attempts(self, run_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM attempts WHERE run_id = ?", (run_id,)).fetchone()[0]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
