"""Following JSONL log files so that each complete line is handed out exactly once, across rotation,
copy-truncate, files that vanish and come back, and restarts.

A file is known by a cursor: its device and inode, a sha256 of its first bytes (up to HEAD_BYTES, so an
inode reused by another file, or a file truncated and rewritten in place, is not mistaken for the one
that was being read), the byte offset just past the last line handed out, and that line's number. The
tail never commits: every Batch carries the cursors that hold once its lines are consumed, and the
caller writes them with `save_cursors` in the same transaction as whatever it derived from the lines.
A kill at any point therefore either keeps both or neither, and the lines are read again after a restart.

What happens to a followed path LOG at each pass:
- same file as before: read on from the offset;
- LOG now names another file (rotation by rename, or deleted and recreated): the old cursor becomes
  `rotated`; it is finished from a handle this process still holds, or by its inode among LOG's siblings
  (LOG.1, LOG-20260101, …), then the new file is read from 0;
- LOG shrank below the offset, or its head changed (copy-truncate): the copy (a sibling with the same
  head) is finished from the offset, then LOG is read from 0;
- LOG is missing: the old cursor is finished as far as it can be found; when LOG reappears as the same
  file it resumes from the offset, as a new file it starts from 0.
A last line without a newline is never handed out: the writer may be mid-line, and the next pass reads it
again. A rotated file that has not grown for `settle` passes is finished: its unterminated tail, if any,
is handed out as a last line (`unterminated`), and its cursor is dropped.

Never does: parse lines, decide what a line means, or hold more than one chunk of a file in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Literal

from refcal.clock import utc_now

HEAD_BYTES = 1024
"""How much of a file's opening identifies it (less while the file is shorter)."""
CHUNK_BYTES = 1 << 20
"""Bytes read at a time; a batch holds the complete lines of one chunk."""
MAX_LINE_BYTES = 1_000_000
"""A longer line is handed out cut to its first KEPT_BYTES, flagged `too_long` (never held whole)."""
KEPT_BYTES = 4096
SETTLE_PASSES = 2
"""Passes without growth after which a rotated file is finished and forgotten."""
MAX_ROTATED = 16
"""Rotated files of one followed path waiting to be found again; beyond that the oldest is forgotten."""

CursorState = Literal["current", "rotated"]

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
"""


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


@dataclass(frozen=True)
class Batch:
    """Complete lines of one file, consecutive, and the cursors to save with them."""

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


def create_schema(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def load_cursors(db: sqlite3.Connection, watched: str) -> list[Cursor]:
    rows = db.execute("SELECT file_id, watched, name, device, inode, head_sha, head_len, offset, lineno, state, idle "
                      "FROM watch_offsets WHERE watched = ? ORDER BY updated_at, rowid", (watched,)).fetchall()
    return [Cursor(*row) for row in rows]


def save_cursors(db: sqlite3.Connection, batch: Batch) -> None:
    """Write a batch's cursors; call inside the transaction that records what the batch's lines produced."""
    now = utc_now()
    for cursor in batch.cursors:
        db.execute("INSERT OR REPLACE INTO watch_offsets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (cursor.file_id, cursor.watched, cursor.name, cursor.device, cursor.inode, cursor.head_sha,
                    cursor.head_len, cursor.offset, cursor.lineno, cursor.state, cursor.idle, now))
    for file_id in batch.dropped:
        db.execute("DELETE FROM watch_offsets WHERE file_id = ?", (file_id,))


def head_digest(handle: BinaryIO, length: int) -> str:
    return hashlib.sha256(os.pread(handle.fileno(), length, 0)).hexdigest()


@dataclass
class _Open:
    handle: BinaryIO
    device: int
    inode: int
    size: int


@dataclass
class _Pending:
    """Cursor changes not yet handed to the caller."""

    changed: dict[str, Cursor] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def take(self) -> tuple[tuple[Cursor, ...], tuple[str, ...], tuple[str, ...]]:
        taken = (tuple(replace(cursor) for cursor in self.changed.values()), tuple(self.dropped), tuple(self.notes))
        self.changed, self.dropped, self.notes = {}, [], []
        return taken


class Tail:
    """Follows paths; `poll()` is one pass over all of them.

    Args:
        db: a connection to the database holding `watch_offsets` (the caller's, so it can commit batches
            with its own state).
        paths: the followed files.
        settle: passes without growth after which a rotated file is finished.
        chunk_bytes: bytes read at a time (the most a batch holds, a long line aside).
    """

    def __init__(self, db: sqlite3.Connection, paths: Sequence[str | Path], settle: int = SETTLE_PASSES,
                 chunk_bytes: int = CHUNK_BYTES, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        create_schema(db)
        self.paths = [str(Path(path).resolve()) for path in paths]
        self.settle, self.chunk_bytes, self.max_line_bytes = settle, chunk_bytes, max_line_bytes
        self._cursors = {watched: load_cursors(db, watched) for watched in self.paths}
        self._handles: dict[tuple[int, int], BinaryIO] = {}
        self._pending = _Pending()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __enter__(self) -> Tail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def cursors(self, watched: str | Path) -> list[Cursor]:
        """Copies of the in-memory cursors of one followed path (oldest first)."""
        return [replace(cursor) for cursor in self._cursors[str(Path(watched).resolve())]]

    def poll(self) -> Iterator[Batch]:
        """One pass: every new complete line of every followed file, in batches. Each batch must be saved
        (save_cursors) before the next is asked for; a batch that is not saved is read again after a restart."""
        for watched in self.paths:
            yield from self._follow(watched)
        cursors, dropped, notes = self._pending.take()
        if cursors or dropped or notes:
            yield Batch(watched="", name="", first_lineno=0, lines=[], cursors=cursors, dropped=dropped, notes=notes)

    # --- which file is which ------------------------------------------------------------------------

    def _follow(self, watched: str) -> Iterator[Batch]:
        cursors = self._cursors[watched]
        opened = self._open(watched)
        current = next((cursor for cursor in cursors if cursor.state == "current"), None)
        if current is not None and not (opened is not None and self._resumes(current, opened)):
            self._retire(current, opened)
        if opened is not None and not any(cursor.state == "current" for cursor in cursors):
            back = next((cursor for cursor in cursors if self._resumes(cursor, opened)), None)
            if back is not None:  # the same file came back under the followed name
                back.state, back.name, back.idle = "current", watched, 0
                cursors.remove(back)
                cursors.append(back)
                self._changed(back)
            else:
                cursors.append(self._new_cursor(watched, opened))
        for cursor in list(cursors):
            yield from self._drain(cursor)

    def _retire(self, current: Cursor, opened: _Open | None) -> None:
        """The followed name no longer holds the current cursor's file: finish that file elsewhere."""
        current.state, current.idle = "rotated", 0
        if opened is not None and (opened.device, opened.inode) == (current.device, current.inode):
            # Same inode, but shrunk or rewritten: copy-truncate. The copy holds what was not read yet.
            copy = self._find(current, by_head=True)
            if copy is None:
                self._pending.notes.append(f"{current.watched} was truncated; no copy with its head was found "
                                           "among its siblings, so lines written after offset "
                                           f"{current.offset} and before the truncation are lost")
                self._drop(current, close=False)  # the handle reads the rewritten file from 0 now
                return
            path, found = copy
            current.name, current.device, current.inode = str(path), found.device, found.inode
        else:
            renamed = self._find(current, by_head=False)  # where it went, to name its lines (None: deleted)
            if renamed is not None:
                current.name = str(renamed[0])
        self._changed(current)

    def _resumes(self, cursor: Cursor, opened: _Open) -> bool:
        """`opened` is the cursor's file, not shrunk below what was read and with the same head."""
        return ((opened.device, opened.inode) == (cursor.device, cursor.inode) and opened.size >= cursor.offset
                and opened.size >= cursor.head_len and head_digest(opened.handle, cursor.head_len) == cursor.head_sha)

    def _new_cursor(self, watched: str, opened: _Open) -> Cursor:
        length = min(HEAD_BYTES, opened.size)
        cursor = Cursor(file_id=uuid.uuid4().hex, watched=watched, name=watched, device=opened.device,
                        inode=opened.inode, head_sha=head_digest(opened.handle, length), head_len=length)
        self._changed(cursor)
        return cursor

    def _open(self, path: str) -> _Open | None:
        """The file at `path` now (a handle already held for the same inode is reused: it keeps a renamed or
        deleted file readable)."""
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open across passes on purpose
        except (FileNotFoundError, NotADirectoryError):
            return None
        status = os.fstat(handle.fileno())
        key = (status.st_dev, status.st_ino)
        held = self._handles.get(key)
        if held is not None:
            handle.close()
            handle = held
        else:
            self._handles[key] = handle
        return _Open(handle, status.st_dev, status.st_ino, status.st_size)

    def _locate(self, cursor: Cursor) -> tuple[_Open, bool] | None:
        """A rotated cursor's file, and whether it may be finished once it stops growing: found by name (the
        name it was last seen under, or a sibling), or through a handle still held on a deleted file. A file
        held open but moved out of reach may still come back under the followed name, so it is kept."""
        found = self._find(cursor, by_head=False)
        if found is not None:
            path, opened = found
            cursor.name = str(path)
            return opened, True
        held = self._handles.get((cursor.device, cursor.inode))
        if held is None:
            return None
        status = os.fstat(held.fileno())
        opened = _Open(held, status.st_dev, status.st_ino, status.st_size)
        return (opened, status.st_nlink == 0) if self._resumes(cursor, opened) else None

    def _find(self, cursor: Cursor, by_head: bool) -> tuple[Path, _Open] | None:
        """Among the followed path's siblings (and the cursor's last name): the file with the cursor's inode,
        or (by_head: a copy) another file with its head and at least its offset in bytes, newest first."""
        watched = Path(cursor.watched)
        candidates = {Path(cursor.name)} if cursor.name != cursor.watched else set()
        with contextlib.suppress(FileNotFoundError):
            candidates |= {path for path in watched.parent.iterdir() if path != watched
                           and (path.name.startswith(watched.name) or path.name.startswith(watched.stem + "-")
                                or path.name.startswith(watched.stem + "."))}
        matches: list[tuple[float, Path, _Open]] = []
        for path in candidates:
            try:
                status = path.stat()
            except OSError:
                continue
            same_inode = (status.st_dev, status.st_ino) == (cursor.device, cursor.inode)
            if same_inode == by_head or status.st_size < max(cursor.offset, cursor.head_len):
                continue
            opened = self._open(str(path))
            if opened is None:
                continue
            if head_digest(opened.handle, cursor.head_len) == cursor.head_sha:
                matches.append((status.st_mtime, path, opened))
            elif (opened.device, opened.inode) not in self._held_keys():
                self._close(opened)
        if not matches:
            return None
        _, path, opened = max(matches, key=lambda match: match[0])
        return path, opened

    def _held_keys(self) -> set[tuple[int, int]]:
        return {(cursor.device, cursor.inode) for cursors in self._cursors.values() for cursor in cursors}

    def _close(self, opened: _Open) -> None:
        handle = self._handles.pop((opened.device, opened.inode), None)
        if handle is not None:
            handle.close()

    def _changed(self, cursor: Cursor) -> None:
        self._pending.changed[cursor.file_id] = cursor

    def _drop(self, cursor: Cursor, close: bool = True) -> None:
        self._cursors[cursor.watched].remove(cursor)
        self._pending.changed.pop(cursor.file_id, None)
        self._pending.dropped.append(cursor.file_id)
        if close and not any((other.device, other.inode) == (cursor.device, cursor.inode)
                   for other in self._cursors[cursor.watched]):
            handle = self._handles.pop((cursor.device, cursor.inode), None)
            if handle is not None:
                handle.close()

    # --- reading ------------------------------------------------------------------------------------

    def _drain(self, cursor: Cursor) -> Iterator[Batch]:
        if cursor.state == "current":
            found = self._open(cursor.watched)
            if found is None or (found.device, found.inode) != (cursor.device, cursor.inode):
                return  # replaced between the check and now: the next pass sorts it out
            opened, finishable = found, False
        else:
            located = self._locate(cursor)
            if located is None:
                yield from self._missing(cursor)
                return
            opened, finishable = located
        grew = False
        tail, tail_cut = b"", frozenset[int]()
        for lines, end, too_long, rest in self._chunks(opened.handle, cursor.offset):
            if not lines:
                tail, tail_cut = rest, too_long
                continue
            grew = True
            first = cursor.lineno + 1
            cursor.offset, cursor.lineno, cursor.idle = end, cursor.lineno + len(lines), 0
            self._grow_head(cursor, opened)
            self._changed(cursor)
            cursors, dropped, notes = self._pending.take()
            yield Batch(cursor.watched, cursor.name, first, lines, cursors, dropped, too_long, notes=notes)
        if cursor.state == "rotated" and not grew:
            cursor.idle += 1
            if finishable and cursor.idle >= self.settle:
                yield from self._finish(cursor, tail, tail_cut)
            else:
                self._changed(cursor)

    def _missing(self, cursor: Cursor) -> Iterator[Batch]:
        """A rotated file nowhere to be found: kept (it may come back under the followed name) until more than
        MAX_ROTATED rotated files of the same path wait, the oldest going first."""
        cursor.idle += 1
        self._changed(cursor)
        if cursor.idle == 1:
            self._pending.notes.append(f"{cursor.name} (rotated from {cursor.watched}) cannot be found; read up to "
                                       f"line {cursor.lineno} (byte {cursor.offset}); resumed if it comes back")
        rotated = [other for other in self._cursors[cursor.watched] if other.state == "rotated"]
        if len(rotated) > MAX_ROTATED:
            oldest = rotated[0]
            self._pending.notes.append(f"{oldest.name}: forgotten unfinished after {MAX_ROTATED} later rotations "
                                       f"(read up to line {oldest.lineno})")
            self._drop(oldest)
        return iter(())

    def _finish(self, cursor: Cursor, tail: bytes, too_long: frozenset[int]) -> Iterator[Batch]:
        """A rotated file that stopped growing: hand out its unterminated tail, forget the cursor."""
        name, first = cursor.name, cursor.lineno + 1
        self._drop(cursor)
        if tail.strip():
            cursors, dropped, notes = self._pending.take()
            yield Batch(cursor.watched, name, first, [tail.rstrip(b"\r")], cursors, dropped, too_long,
                        unterminated=True, notes=notes)

    def _grow_head(self, cursor: Cursor, opened: _Open) -> None:
        """A file first seen short is identified by more of its head once it has more."""
        if cursor.head_len < HEAD_BYTES and cursor.offset > cursor.head_len:
            cursor.head_len = min(HEAD_BYTES, cursor.offset)
            cursor.head_sha = head_digest(opened.handle, cursor.head_len)

    def _chunks(self, handle: BinaryIO, offset: int) -> Iterator[tuple[list[bytes], int, frozenset[int], bytes]]:
        """(complete lines, offset after them, indexes of cut lines, unterminated rest) per chunk read; the
        last tuple has no lines and the rest of the file after the last newline (cut if over-long)."""
        position = offset
        pending = b""
        skip_at = -1  # inside a line longer than max_line_bytes: the next byte to look at (its start is kept)
        while True:
            chunk = os.pread(handle.fileno(), self.chunk_bytes, skip_at if skip_at >= 0 else position + len(pending))
            if not chunk:
                yield [], position, frozenset({0}) if skip_at >= 0 else frozenset(), pending
                return
            if skip_at >= 0:
                cut = chunk.find(b"\n")
                if cut < 0:
                    skip_at += len(chunk)
                    continue
                position, skip_at = skip_at + cut + 1, -1
                yield [pending], position, frozenset({0}), b""
                pending = b""
                continue
            data = pending + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > self.max_line_bytes:
                    skip_at, pending = position + len(data), data[:KEPT_BYTES]
                else:
                    pending = data
                continue
            lines = data[:cut].split(b"\n")
            too_long = frozenset(index for index, line in enumerate(lines) if len(line) > self.max_line_bytes)
            if too_long:
                lines = [line[:KEPT_BYTES] if index in too_long else line for index, line in enumerate(lines)]
            if b"\r" in data:
                lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
            position += cut + 1
            pending = data[cut + 1:]
            yield lines, position, too_long, pending
