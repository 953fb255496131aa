"""One way to open the run database: every module that keeps tables in it (the store, the watch sweep, its
alert outbox and drift ledger) opens its own connection with the same settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with `schema` applied (CREATE … IF NOT EXISTS statements)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL survives a killed process (SIGKILL) with every commit intact; only power loss can drop the last
    # transactions, which a resume then simply re-does.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db
