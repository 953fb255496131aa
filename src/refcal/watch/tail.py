"""Following JSONL log files so that each complete line is handed out exactly once, across rotation (several
between two passes too), copy-truncate, compression, files that vanish and come back, and restarts — and so that
what was gone before it could be read is recorded as a gap, never passed over.

A file is known by a cursor: its device and inode, a sha256 of its first bytes (up to HEAD_BYTES, so an
inode reused by another file, or a file truncated and rewritten in place, is not mistaken for the one
that was being read), the byte offset just past the last line handed out, and that line's number. The
tail never commits: every Batch carries the changes that hold once its lines are consumed (cursors, the
siblings accounted for, gaps), and the caller writes them with `save_cursors` in the same transaction as
whatever it derived from the lines. A kill at any point therefore either keeps both or neither, and the lines
are read again after a restart. Tables and records: refcal.watch.tail_state.

The siblings of a followed path LOG are the files its sibling patterns name (refcal.watch.rotation: LOG.1,
LOG.2.gz, LOG-20260101, …), each with its place in the rotation chain. A compressed sibling (gzip) is read as
its decompressed content and known by that content's head. What happens to LOG at each pass:
- same file as before: read on from the offset;
- LOG now names another file (rotation by rename, or deleted and recreated): the old cursor becomes
  `rotated`; it is finished from wherever it is now — by inode among the siblings, a handle this process still
  holds, or a copy with its head (a compressed one included) — then the new file is read from 0;
- LOG shrank below the offset, or its head changed (copy-truncate): the copy (a sibling with the same
  head) is finished from the offset, then LOG is read from 0;
- LOG is missing: the old cursor is finished as far as it can be found; when LOG reappears as the same
  file it resumes from the offset, as a new file it starts from 0.
When LOG changed, the siblings newer in the chain than the newest one accounted for, and not accounted for
themselves, are files that were LOG between the two passes: each is read from 0, oldest first, before the new
LOG. Accounted for are the files being read, those finished, and those there when the tail first looked (or
that appeared older than a file it knew): `watch_known`. A rotated file that cannot be found any more while LOG
holds another file is gone: unless it had been looked at since its rotation and read to its end, that is a gap
(`watch_gaps`; the sweep alerts on it); so are a copy-truncate whose copy is gone, a compressed copy that ends
short, a hole in a numbered chain, and a rotated file forgotten after MAX_ROTATED later ones.
A last line without a newline is never handed out: the writer may be mid-line, and the next pass reads it
again. A rotated file that has not grown for `settle` passes is finished: its unterminated tail, if any,
is handed out as a last line (`unterminated`), and its cursor is dropped.

Never does: parse lines, decide what a line means, or hold more than one chunk of a file in memory.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from refcal.clock import utc_now
from refcal.watch.rotation import DEFAULT_SIBLINGS, Heads, Sibling, digest, is_compressed
from refcal.watch.tail_match import Record, SiblingMatch
from refcal.watch.tail_read import KEPT_BYTES, OpenFile, head_digest, split_lines
from refcal.watch.tail_state import (
    HEAD_BYTES,
    LOOKED,
    SCHEMA,
    Batch,
    Cursor,
    CursorState,
    Gap,
    KnownFile,
    Pending,
    create_schema,
    gap_id,
    load_cursors,
    load_gaps,
    load_known,
    save_cursors,
)

__all__ = ["CHUNK_BYTES", "HEAD_BYTES", "KEPT_BYTES", "MAX_LINE_BYTES", "MAX_ROTATED", "SCHEMA", "SETTLE_PASSES",
           "Batch", "Cursor", "CursorState", "Gap", "KnownFile", "Tail", "create_schema", "head_digest",
           "load_cursors", "load_gaps", "load_known", "save_cursors"]

CHUNK_BYTES = 1 << 20
"""Bytes read at a time; a batch holds the complete lines of one chunk."""
MAX_LINE_BYTES = 1_000_000
"""A longer line is handed out cut to its first KEPT_BYTES, flagged `too_long` (never held whole)."""
SETTLE_PASSES = 2
"""Passes without growth after which a rotated file is finished and forgotten."""
MAX_ROTATED = 16
"""Rotated files of one followed path waiting to be found again; beyond that the oldest is forgotten."""


class Tail(SiblingMatch):
    """Follows paths; `poll()` is one pass over all of them.

    Args:
        db: a connection to the database holding the tail's tables (the caller's, so it can commit batches
            with its own state).
        paths: the followed files.
        settle: passes without growth after which a rotated file is finished.
        chunk_bytes: bytes read at a time (the most a batch holds, a long line aside).
        siblings: glob patterns naming a followed file's rotated copies, relative to its folder, with {name},
            {stem} and {suffix} (refcal.watch.rotation.DEFAULT_SIBLINGS).
    """

    def __init__(self, db: sqlite3.Connection, paths: Sequence[str | Path], settle: int = SETTLE_PASSES,
                 chunk_bytes: int = CHUNK_BYTES, max_line_bytes: int = MAX_LINE_BYTES,
                 siblings: Sequence[str] = DEFAULT_SIBLINGS) -> None:
        unaccounted = create_schema(db)
        self.paths = [str(Path(path).resolve()) for path in paths]
        self.settle, self.chunk_bytes, self.max_line_bytes = settle, chunk_bytes, max_line_bytes
        self.siblings = tuple(siblings)
        self._cursors = {watched: load_cursors(db, watched) for watched in self.paths}
        self._known = {watched: {(known.device, known.inode): known for known in load_known(db, watched)}
                       for watched in self.paths}
        self._first_look = {watched for watched in self.paths
                            if not self._known[watched] and (unaccounted or not self._cursors[watched])}
        """Paths whose siblings were never accounted for: what is there now is history, not unseen rotations."""
        for watched in list(self._first_look):
            if not os.path.lexists(watched) and not self._scan(watched):  # nothing there yet: all to come is new
                db.execute("INSERT OR IGNORE INTO watch_known VALUES (?, ?, ?, '', 0, 0, ?, ?, 0)",
                           (watched, *LOOKED, watched, utc_now()))
                self._known[watched][LOOKED] = KnownFile(watched, *LOOKED, "", 0, 0, watched)
                self._first_look.discard(watched)
        self._handles: dict[tuple[int, int], BinaryIO] = {}
        self._pending = Pending()
        self._heads = Heads()
        self._located: dict[str, Sibling] = {}
        """This pass: the sibling holding each rotated cursor's file."""
        self._copies: dict[str, Sibling] = {}
        """This pass: a copy of a file read on through a held handle (it stands for the file once finished)."""
        self._log_key: tuple[int, int] | None = None
        """This pass: the followed file's (device, inode), whose handle stays open."""
        self._scanned: set[tuple[int, int]] = set()
        """This pass: (device, inode) of every sibling listed."""
        self._taken: dict[Path, Record] = {}
        """This pass: what each sibling accounted for holds."""
        self._shifted = False
        """This pass: a file accounted for has moved along the rotation chain."""

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
        if self._pending:
            yield Batch(watched="", name="", first_lineno=0, lines=[], **self._pending.take())

    # --- which file is which ------------------------------------------------------------------------

    def _follow(self, watched: str) -> Iterator[Batch]:
        cursors = self._cursors[watched]
        opened = self._open(watched)
        self._log_key = (opened.device, opened.inode) if opened is not None else None
        current = self._current(watched)
        retired = None
        if current is not None and not (opened is not None and self._resumes(current, opened)):
            retired = current
        scan = self._scan(watched)
        if retired is not None:
            self._retire(retired, opened, scan)
        fresh = None
        if opened is not None and self._current(watched) is None:
            back = next((cursor for cursor in cursors if self._resumes(cursor, opened)), None)
            if back is not None:  # the same file came back under the followed name
                back.state, back.name, back.idle, back.looked = "current", watched, 0, True
                back.seq = self._next_seq(watched)
                cursors.remove(back)
                cursors.append(back)
                self._changed(back)
            elif opened.size > 0:  # an empty file is nothing to know it by: its cursor waits for content
                fresh = opened
        taken = self._identify(watched, scan)
        if any(cursor.state == "rotated" and cursor.file_id not in self._located and self._held(cursor) is None
               for cursor in cursors):  # not found: look again before calling it gone (a rename mid-listing)
            scan = self._scan(watched)
            taken = self._identify(watched, scan)
        current = self._current(watched)
        if retired is not None or fresh is not None or self._shifted or current is None or not current.head_len:
            # LOG changed, or the chain moved, or LOG is missing or empty (what it held went elsewhere)
            self._discover(watched, scan, taken, retired)
        if fresh is not None:
            cursors.append(self._new_cursor(watched, watched, fresh, "current"))
        for cursor in list(cursors):
            yield from self._drain(cursor)
        self._remember(watched, scan, taken)
        if watched in self._first_look:  # what appears from now on is new, after a restart too
            self._first_look.discard(watched)
            self._know(KnownFile(watched, *LOOKED, "", 0, 0, watched))

    def _current(self, watched: str) -> Cursor | None:
        return next((cursor for cursor in self._cursors[watched] if cursor.state == "current"), None)

    def _retire(self, current: Cursor, opened: OpenFile | None, scan: list[Sibling]) -> None:
        """The followed name no longer holds the current cursor's file: finish that file elsewhere."""
        current.state, current.idle, current.looked = "rotated", 0, False
        if opened is not None and (opened.device, opened.inode) == (current.device, current.inode):
            # Same inode, but shrunk or rewritten: copy-truncate. The copy holds what was not read yet.
            copy = self._copy_of(current, scan, {})
            if copy is None:
                self._gap(current, "truncated in place, and no copy of it (a sibling with its head) is left to "
                                   "read on from")
                self._drop(current, close=False)  # the handle reads the rewritten file from 0 now
                return
            current.name, current.device, current.inode = str(copy.path), copy.device, copy.inode
        else:
            renamed = next((s for s in scan if (s.device, s.inode) == (current.device, current.inode)), None)
            if renamed is not None:  # where it went, to name its lines (None: deleted, or moved out of reach)
                current.name = str(renamed.path)
        self._changed(current)

    def _resumes(self, cursor: Cursor, opened: OpenFile) -> bool:
        """`opened` is the cursor's file, not shrunk below what was read and with the same head."""
        return ((opened.device, opened.inode) == (cursor.device, cursor.inode) and opened.size >= cursor.offset
                and opened.size >= cursor.head_len and head_digest(opened.handle, cursor.head_len) == cursor.head_sha)

    def _new_cursor(self, watched: str, name: str, opened: OpenFile, state: CursorState) -> Cursor:
        head = opened.head(HEAD_BYTES if opened.compressed else min(HEAD_BYTES, opened.size))
        cursor = Cursor(file_id=uuid.uuid4().hex, watched=watched, name=name, device=opened.device,
                        inode=opened.inode, head_sha=digest(head), head_len=len(head), state=state,
                        seq=self._next_seq(watched))
        self._changed(cursor)
        return cursor

    def _next_seq(self, watched: str) -> int:
        return max((cursor.seq for cursor in self._cursors[watched]), default=0) + 1

    def _open(self, path: str, sibling: bool = False) -> OpenFile | None:
        """The file at `path` now (a handle already held for the same inode is reused: it keeps a renamed or
        deleted file readable). A sibling starting with gzip's magic is read decompressed."""
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open across passes on purpose
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        status = os.fstat(handle.fileno())
        key = (status.st_dev, status.st_ino)
        held = self._handles.get(key)
        if held is not None:
            handle.close()
            handle = held
        else:
            self._handles[key] = handle
        compressed = sibling and is_compressed(handle.fileno())
        return OpenFile(handle, status.st_dev, status.st_ino, status.st_size, compressed)

    def _held(self, cursor: Cursor) -> OpenFile | None:
        """The cursor's file through a handle this process holds, if it still is that file and is out of the
        siblings' reach (deleted, or moved away): a file among them is whatever the listing made of it."""
        key = (cursor.device, cursor.inode)
        held = self._handles.get(key)
        if held is None or key in self._scanned or key == self._log_key:
            return None
        status = os.fstat(held.fileno())
        opened = OpenFile(held, status.st_dev, status.st_ino, status.st_size, is_compressed(held.fileno()))
        if opened.compressed:
            return opened if digest(opened.head(cursor.head_len)) == cursor.head_sha else None
        return opened if self._resumes(cursor, opened) else None

    def _locate(self, cursor: Cursor) -> tuple[OpenFile, bool] | None:
        """A rotated cursor's file, and whether it may be finished once it stops growing: the sibling found for
        it this pass, or a handle still held on a deleted file. A file held open but moved out of reach may
        still come back under the followed name, so it is kept."""
        sibling = self._located.get(cursor.file_id)
        if sibling is not None:
            opened = self._open(str(sibling.path), sibling=True)
            if opened is not None and (opened.device, opened.inode) == (sibling.device, sibling.inode):
                if cursor.name != str(sibling.path):
                    cursor.name = str(sibling.path)
                    self._changed(cursor)
                return opened, True
        held = self._held(cursor)
        if held is None:
            return None
        return held, os.fstat(held.handle.fileno()).st_nlink == 0

    def _release(self, cursor: Cursor, keep: tuple[int, int]) -> None:
        """Close the handle on a cursor's old inode once nothing reads it."""
        key = (cursor.device, cursor.inode)
        users = [(other.device, other.inode) for others in self._cursors.values() for other in others]
        if key not in (keep, self._log_key) and users.count(key) <= 1:
            handle = self._handles.pop(key, None)
            if handle is not None:
                handle.close()

    def _changed(self, cursor: Cursor) -> None:
        self._pending.changed[cursor.file_id] = cursor

    def _gap(self, cursor: Cursor, reason: str, lost_bytes: int | None = None, lost_lines: int | None = None) -> None:
        unread = max(0, cursor.seen_size - cursor.offset)
        self._record(Gap(gap_id(cursor.watched, cursor.file_id, cursor.offset, reason), cursor.watched, cursor.name,
                         cursor.offset, cursor.lineno, unread, lost_bytes, lost_lines, reason, utc_now()))

    def _drop(self, cursor: Cursor, close: bool = True, known: Sibling | None = None, tail: bytes = b"") -> None:
        """Forget a cursor; `known`: the sibling that holds its (finished) file, accounted for from now on
        (`tail`: the unterminated last line handed out with it)."""
        self._cursors[cursor.watched].remove(cursor)
        self._pending.changed.pop(cursor.file_id, None)
        self._pending.dropped.append(cursor.file_id)
        if known is not None:
            record = KnownFile(cursor.watched, known.device, known.inode, cursor.head_sha, cursor.head_len,
                               known.size if cursor.head_len == 0 else cursor.offset + len(tail), str(known.path),
                               cursor.lineno + bool(tail.strip()))
            self._known[cursor.watched][(known.device, known.inode)] = record
            self._taken[known.path] = record  # accounted for in this pass
            self._know(record)
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
        if (not opened.compressed and cursor.seen_size != opened.size) or not cursor.looked:
            cursor.seen_size = opened.size if not opened.compressed else cursor.seen_size
            cursor.looked = True
            self._changed(cursor)
        grew = False
        tail, tail_cut = b"", frozenset[int]()
        chunks = split_lines(opened.read, cursor.offset, self.chunk_bytes, self.max_line_bytes)
        for lines, end, too_long, rest in chunks:
            if not lines:
                tail, tail_cut = rest, too_long
                continue
            grew = True
            first = cursor.lineno + 1
            cursor.offset, cursor.lineno, cursor.idle = end, cursor.lineno + len(lines), 0
            cursor.seen_size = max(cursor.seen_size, end)
            self._grow_head(cursor, opened)
            self._changed(cursor)
            yield Batch(cursor.watched, cursor.name, first, lines, too_long=too_long, **self._pending.take())
        if opened.compressed and cursor.seen_size != cursor.offset + len(tail):
            cursor.seen_size = cursor.offset + len(tail)
            self._changed(cursor)
        if cursor.state == "rotated" and not grew:
            cursor.idle += 1
            holder = self._located.get(cursor.file_id) or self._copies.get(cursor.file_id)
            if not opened.complete and cursor.idle >= self.settle:  # a compressed copy that stops short
                self._gap(cursor, "its compressed copy ends before its end-of-stream marker")
                self._drop(cursor, known=holder)
            elif finishable and opened.complete and cursor.idle >= self.settle:
                yield from self._finish(cursor, tail, tail_cut, holder)
            else:
                self._changed(cursor)

    def _missing(self, cursor: Cursor) -> Iterator[Batch]:
        """A rotated file nowhere to be found. While the followed name is missing too it is kept (it may come
        back under that name) until more than MAX_ROTATED rotated files of the same path wait, the oldest going
        first; once the followed name holds another file it is gone."""
        if self._current(cursor.watched) is not None:
            unread = max(0, cursor.seen_size - cursor.offset)
            if cursor.looked and not unread:
                self._pending.notes.append(f"{cursor.name} (rotated from {cursor.watched}) is gone; it had been read "
                                           f"to its end (line {cursor.lineno}) when last seen")
            elif cursor.looked and cursor.idle >= 1:  # seen unchanged since its rotation: only its unfinished line
                self._gap(cursor, "gone before its last (unterminated) line was read", unread, 1)
            else:
                self._gap(cursor, "gone before it was read to its end")
            self._drop(cursor)
            return iter(())
        cursor.idle += 1
        self._changed(cursor)
        if cursor.idle == 1:
            self._pending.notes.append(f"{cursor.name} (rotated from {cursor.watched}) cannot be found; read up to "
                                       f"line {cursor.lineno} (byte {cursor.offset}); resumed if it comes back")
        rotated = [other for other in self._cursors[cursor.watched] if other.state == "rotated"]
        if len(rotated) > MAX_ROTATED:
            oldest = rotated[0]
            self._gap(oldest, f"forgotten unfinished after {MAX_ROTATED} later rotations")
            self._drop(oldest)
        return iter(())

    def _finish(self, cursor: Cursor, tail: bytes, too_long: frozenset[int], holder: Sibling | None
                ) -> Iterator[Batch]:
        """A rotated file that stopped growing: hand out its unterminated tail, forget the cursor (its file is
        accounted for from now on)."""
        name, first = cursor.name, cursor.lineno + 1
        self._drop(cursor, known=holder, tail=tail)
        if tail.strip():
            yield Batch(cursor.watched, name, first, [tail.rstrip(b"\r")], too_long=too_long, unterminated=True,
                        **self._pending.take())

    def _grow_head(self, cursor: Cursor, opened: OpenFile) -> None:
        """A file first seen short is identified by more of its head once it has more."""
        if cursor.head_len < HEAD_BYTES and cursor.offset > cursor.head_len:
            cursor.head_len = min(HEAD_BYTES, cursor.offset)
            cursor.head_sha = digest(opened.head(cursor.head_len))
