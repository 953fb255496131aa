"""One way to open the run database: every module that keeps tables in it (the store, the watch sweep, its
alert outbox and drift ledger) opens its own connection with the same settings, through `Database`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import ClassVar, Self

from refcal.errors import StoreFileError

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100


_CHECKED: set[Path] = set()
"""Paths this process has checked and opened. The byte check runs once per path: opening and closing a plain
handle on a database file while SQLite holds connections to it in the same process drops SQLite's POSIX locks
on it (closing any descriptor of a file releases all of the process's fcntl locks on that file), and another
connection could then checkpoint under a writer and lose commits."""


def check_database_file(path: Path) -> None:
    """Refuse, before SQLite touches it, a path that cannot be a run database: a directory, a device, a file that
    is not SQLite, or one shorter than its own header says (truncated). A missing or empty file is a new store.
    Checked once per path per process (see _CHECKED)."""
    where = str(path)
    try:
        resolved = path.resolve()
    except OSError:
        resolved = path
    if resolved in _CHECKED:
        return
    _check_bytes(path, where)
    _CHECKED.add(resolved)  # a missing or new file too: the next open of it may come while this one is held


def _check_bytes(path: Path, where: str) -> None:
    if not path.exists():
        return
    if path.is_dir():
        raise StoreFileError("is a directory, not a run database", path=where)
    if not path.is_file():
        raise StoreFileError("is not a regular file, not a run database", path=where)
    try:
        with path.open("rb") as handle:
            header = handle.read(HEADER_BYTES)
        size = path.stat().st_size
    except OSError as error:
        raise StoreFileError(f"cannot read the run database: {error.strerror or error}", path=where) from None
    if not header:
        return
    if len(header) < HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        what = "truncated: shorter than a SQLite header" if SQLITE_MAGIC.startswith(header[:16]) \
            else "not a SQLite database"
        raise StoreFileError(f"{what}, so not a run database", path=where)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]  # the page count is trusted only when this holds
    journals = [path.with_name(path.name + suffix) for suffix in ("-wal", "-journal")]
    recovering = any(journal.is_file() and journal.stat().st_size for journal in journals)  # SQLite replays these
    if header_valid and pages and size < pages * page_size and not recovering:
        raise StoreFileError(f"truncated: {size:,} bytes where its header says {pages * page_size:,}", path=where)


def open_database(path: Path, schema: str, core: tuple[str, ...] = ()) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with `schema` applied (CREATE … IF NOT EXISTS statements).

    A path that is not a usable database raises StoreFileError naming it (see `check_database_file`), and so
    does SQLite's own refusal (a damaged file), before anything is written to it."""
    check_database_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreFileError(f"cannot create its folder: {error.strerror or error}", path=str(path)) from None
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreFileError(f"cannot open the run database: {error}", path=str(path)) from None
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (SIGKILL) with every commit intact; only power loss can drop the last
        # transactions, which a resume then simply re-does.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        try:
            _check_core_tables(db, path, core)
        except StoreFileError:
            db.close()
            raise
        db.executescript(schema)
    except sqlite3.DatabaseError as error:
        db.close()
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            raise
        raise StoreFileError(f"damaged or not a run database: {error}", path=str(path)) from None
    return db


def _check_core_tables(db: sqlite3.Connection, path: Path, core: tuple[str, ...]) -> None:
    """Tables that only exist together: one present without another is a damaged file, and re-creating the
    missing one empty would make every later reader (a report, a receipt) see a run with no attempts."""
    if not core:
        return
    present = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = [table for table in core if table in present]
    missing = [table for table in core if table not in present]
    if found and missing:
        raise StoreFileError(f"damaged run database: table '{missing[0]}' is missing although '{found[0]}' is "
                             "there (not re-created: restore the file from a copy)", path=str(path))


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
    CORE: ClassVar[tuple[str, ...]] = ()
    """Tables that exist together or not at all (see _check_core_tables)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_database(self.path, self.SCHEMA, self.CORE)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self._db)
