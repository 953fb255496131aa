"""One way to open the run database: every module that keeps tables in it (the store, the watch sweep, its
alert outbox and drift ledger) opens its own connection with the same settings, through `Database`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import ClassVar, Self


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


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT on `db`, rolled back when the block raises (anything, KeyboardInterrupt too)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Database:
    """A handle on the tables `SCHEMA` declares in one database file: opened by `open_database`, closed by
    `close` or by leaving a `with` block; `_transaction()` groups statements into one commit."""

    SCHEMA: ClassVar[str] = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, self.SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)
