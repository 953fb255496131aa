"""What the tail (refcal.watch.tail) keeps in the caller's database, and what it hands out: cursors (where
reading of each file stands), the rotation siblings it has accounted for, the gaps it could not read, and the
batches that carry lines together with the changes to save with them.

Tables: `watch_offsets` (one row per file being read), `watch_known` (siblings already read to their end, or
there before the tail first looked: never read as unseen rotations), `watch_gaps` (bytes of a followed log that
were gone before they were read: which file, from which byte and line, how many bytes — at least — and, where
knowable, how many lines).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from refcal.clock import utc_now

CursorState = Literal["current", "rotated"]
HEAD_BYTES = 1024
"""How much of a file's opening identifies it (less while the file is shorter)."""
LOOKED = (0, 0)
"""(device, inode) of the watch_known row that says a path's siblings were accounted for once (no file has it)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_offsets (
    file_id TEXT PRIMARY KEY,
    watched TEXT NOT NULL,
    name TEXT NOT NULL,
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    head_sha TEXT NOT NULL,
    head_len INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    lineno INTEGER NOT NULL,
    state TEXT NOT NULL,
    idle INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS watch_offsets_watched ON watch_offsets (watched);
CREATE TABLE IF NOT EXISTS watch_known (
    watched TEXT NOT NULL,
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    head_sha TEXT NOT NULL,
    head_len INTEGER NOT NULL,
    size INTEGER NOT NULL,
    name TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    lineno INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (watched, device, inode)
);
CREATE TABLE IF NOT EXISTS watch_gaps (
    gap_id TEXT PRIMARY KEY,
    watched TEXT NOT NULL,
    name TEXT NOT NULL,
    offset INTEGER NOT NULL,
    lineno INTEGER NOT NULL,
    min_bytes INTEGER NOT NULL,
    lost_bytes INTEGER,
    lost_lines INTEGER,
    reason TEXT NOT NULL,
    found_at TEXT NOT NULL
);
"""
ADDED_COLUMNS = {"seen_size": "INTEGER NOT NULL DEFAULT 0", "seq": "INTEGER NOT NULL DEFAULT 0",
                 "looked": "INTEGER NOT NULL DEFAULT 1"}
"""Columns of watch_offsets added after its first release (added to older databases on open)."""
CURSOR_COLUMNS = ("file_id", "watched", "name", "device", "inode", "head_sha", "head_len", "offset", "lineno",
                  "state", "idle", "seen_size", "seq", "looked")


@dataclass
class Cursor:
    """Where reading of one file stands (one row of `watch_offsets`)."""

    file_id: str
    watched: str
    """The followed path, as given (resolved)."""
    name: str
    """Where the file was last seen (the followed path, or a sibling it was rotated to)."""
    device: int
    inode: int
    head_sha: str
    head_len: int
    offset: int = 0
    """Bytes handed out: the file's next line starts here."""
    lineno: int = 0
    """Number of the last line handed out (1-based; 0 before the first)."""
    state: CursorState = "current"
    idle: int = 0
    """Passes a rotated file has not grown."""
    seen_size: int = 0
    """Bytes the file held when last looked at (what is known to exist past `offset`)."""
    seq: int = 0
    """Order among the path's files: older files first."""
    looked: bool = True
    """False for a rotated file not looked at since it left the followed name (what was written to it between
    the last look and the rotation is unknown)."""


@dataclass
class KnownFile:
    """A sibling accounted for: read to its end, or there before the tail first looked (one row of watch_known)."""

    watched: str
    device: int
    inode: int
    head_sha: str
    head_len: int
    size: int
    """Bytes accounted for: read (or there when first seen); more on a later look is read on from here."""
    name: str
    lineno: int = 0
    """Lines in those bytes (0 when not read)."""


@dataclass(frozen=True)
class Gap:
    """Bytes of a followed log gone before they were read (one row of watch_gaps)."""

    gap_id: str
    """Stable for the same loss (the same file and offset): recording it again changes nothing."""
    watched: str
    name: str
    """The file, where it was last seen."""
    offset: int
    """Bytes of it read (and handed out) before the gap."""
    lineno: int
    """Lines of it handed out before the gap."""
    min_bytes: int
    """Bytes known to be lost (seen in the file but not read); what was written after the last look is not."""
    lost_bytes: int | None
    """The exact loss, where knowable."""
    lost_lines: int | None
    """Lines lost, where knowable."""
    reason: str
    found_at: str

    def text(self) -> str:
        amount = (f"{self.lost_bytes:,} bytes" if self.lost_bytes is not None
                  else f"at least {self.min_bytes:,} bytes" if self.min_bytes else "an unknown number of bytes")
        lines = f" ({self.lost_lines:,} lines)" if self.lost_lines is not None else ""
        return (f"{self.name} (followed as {self.watched}): {self.reason}; read to line {self.lineno} (byte "
                f"{self.offset:,}); {amount}{lines} after that lost")


def gap_id(*parts: object) -> str:
    return "gap-" + hashlib.sha256("|".join(str(part) for part in parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Batch:
    """Complete lines of one file, consecutive, and the changes to save with them."""

    watched: str
    name: str
    """The file the lines were read from."""
    first_lineno: int
    lines: list[bytes]
    """Without their newline (and without a trailing carriage return); blank lines included."""
    cursors: tuple[Cursor, ...] = ()
    """Cursors changed up to the end of this batch: save them in the transaction that consumes the lines."""
    dropped: tuple[str, ...] = ()
    """File ids of cursors finished and forgotten."""
    too_long: frozenset[int] = frozenset()
    """Indexes (into `lines`) of lines cut at KEPT_BYTES because they ran past MAX_LINE_BYTES."""
    unterminated: bool = False
    """The last line had no newline (a finished rotated file's tail)."""
    notes: tuple[str, ...] = ()
    """What the tail could not do (a rotated file gone before it was finished), for the caller to report."""
    known: tuple[KnownFile, ...] = ()
    """Siblings now accounted for (saved with the batch)."""
    forgotten: tuple[tuple[str, int, int], ...] = ()
    """(watched, device, inode) of siblings no longer there."""
    gaps: tuple[Gap, ...] = ()
    """Losses found: saved with the batch; the sweep alerts on each."""


Key = tuple[str, int, int]


@dataclass
class Pending:
    """Changes not yet handed to the caller."""

    changed: dict[str, Cursor] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    known: dict[Key, KnownFile] = field(default_factory=dict)
    forgotten: dict[Key, None] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)

    def take(self) -> dict[str, Any]:
        taken = {"cursors": tuple(replace(cursor) for cursor in self.changed.values()), "dropped": tuple(self.dropped),
                 "notes": tuple(self.notes), "known": tuple(replace(known) for known in self.known.values()),
                 "forgotten": tuple(self.forgotten), "gaps": tuple(self.gaps)}
        self.changed, self.dropped, self.notes, self.known, self.forgotten, self.gaps = {}, [], [], {}, {}, []
        return taken

    def __bool__(self) -> bool:
        return bool(self.changed or self.dropped or self.notes or self.known or self.forgotten or self.gaps)


def create_schema(db: sqlite3.Connection) -> bool:
    """Create the tables (and add newer columns); True when watch_known is new in a database that already had
    cursors, i.e. the siblings there were never accounted for."""
    had_known = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watch_known'").fetchone()
    had_offsets = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watch_offsets'").fetchone()
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(watch_offsets)")}
    for column, declaration in ADDED_COLUMNS.items():
        if column not in columns:
            db.execute(f"ALTER TABLE watch_offsets ADD COLUMN {column} {declaration}")
    return bool(had_offsets) and not had_known


def load_cursors(db: sqlite3.Connection, watched: str) -> list[Cursor]:
    rows = db.execute(f"SELECT {', '.join(CURSOR_COLUMNS)} FROM watch_offsets WHERE watched = ? "
                      "ORDER BY seq, updated_at, rowid", (watched,)).fetchall()
    return [Cursor(*row[:-1], looked=bool(row[-1])) for row in rows]


def load_known(db: sqlite3.Connection, watched: str) -> list[KnownFile]:
    rows = db.execute("SELECT watched, device, inode, head_sha, head_len, size, name, lineno FROM watch_known "
                      "WHERE watched = ? ORDER BY rowid", (watched,)).fetchall()
    return [KnownFile(*row) for row in rows]


def load_gaps(db: sqlite3.Connection, watched: str | None = None) -> list[Gap]:
    """Recorded gaps (of one followed path, or all), oldest first."""
    query = ("SELECT gap_id, watched, name, offset, lineno, min_bytes, lost_bytes, lost_lines, reason, found_at "
             "FROM watch_gaps" + (" WHERE watched = ?" if watched is not None else "") + " ORDER BY found_at, rowid")
    return [Gap(*row) for row in db.execute(query, (watched,) if watched is not None else ())]


def save_cursors(db: sqlite3.Connection, batch: Batch) -> None:
    """Write a batch's changes; call inside the transaction that records what the batch's lines produced."""
    now = utc_now()
    marks = ", ".join("?" * (len(CURSOR_COLUMNS) + 1))
    for cursor in batch.cursors:
        db.execute(f"INSERT OR REPLACE INTO watch_offsets ({', '.join(CURSOR_COLUMNS)}, updated_at) VALUES ({marks})",
                   (cursor.file_id, cursor.watched, cursor.name, cursor.device, cursor.inode, cursor.head_sha,
                    cursor.head_len, cursor.offset, cursor.lineno, cursor.state, cursor.idle, cursor.seen_size,
                    cursor.seq, int(cursor.looked), now))
    for file_id in batch.dropped:
        db.execute("DELETE FROM watch_offsets WHERE file_id = ?", (file_id,))
    for watched, device, inode in batch.forgotten:
        db.execute("DELETE FROM watch_known WHERE watched = ? AND device = ? AND inode = ?", (watched, device, inode))
    for known in batch.known:
        db.execute("INSERT OR REPLACE INTO watch_known VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (known.watched, known.device, known.inode, known.head_sha, known.head_len, known.size, known.name,
                    now, known.lineno))
    for gap in batch.gaps:
        db.execute("INSERT OR IGNORE INTO watch_gaps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (gap.gap_id, gap.watched, gap.name, gap.offset, gap.lineno, gap.min_bytes, gap.lost_bytes,
                    gap.lost_lines, gap.reason, gap.found_at))
