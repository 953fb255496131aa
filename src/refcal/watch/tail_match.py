"""How the tail (refcal.watch.tail) tells the rotation siblings of a followed log apart at each pass: which one
holds the file of each rotated cursor and of each file already accounted for (`watch_known`), which ones are
files that were the followed name between two passes (read from their start), and what is gone.

Identity is the device and inode with the head of the content (decompressed for a gzip sibling), else a copy
with the head (a copy-truncate's copy, a file compressed since). Files with a head are matched first: an empty
head proves nothing, and a deleted file's inode is soon another file's. After a change of the followed name
(or a move along the chain, or while it is missing or empty), the siblings that hold nothing accounted for and
sit newer in the rotation chain than the newest file accounted for (by its head) are new: they are read from
0, oldest first. In a numbered chain whose numbers say the newest is highest, that is read the other way. At
the end of a pass every sibling in the chain is accounted for: what was not read is known from then on.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from refcal.clock import utc_now
from refcal.watch.rotation import Heads, OrderKey, Sibling, digest, list_siblings
from refcal.watch.tail_state import HEAD_BYTES, LOOKED, Cursor, Gap, KnownFile, Pending, gap_id

if TYPE_CHECKING:
    from refcal.watch.tail_read import OpenFile
    from refcal.watch.tail_state import CursorState

Record = Cursor | KnownFile


class SiblingMatch:
    """The part of Tail that matches files to siblings (a mixin: Tail holds the state named here)."""

    siblings: tuple[str, ...]
    _cursors: dict[str, list[Cursor]]
    _known: dict[str, dict[tuple[int, int], KnownFile]]
    _first_look: set[str]
    _pending: Pending
    _heads: Heads
    _located: dict[str, Sibling]
    _copies: dict[str, Sibling]
    _taken: dict[Path, Record]
    _scanned: set[tuple[int, int]]
    _shifted: bool

    if TYPE_CHECKING:
        def _current(self, watched: str) -> Cursor | None: ...
        def _held(self, cursor: Cursor) -> OpenFile | None: ...
        def _release(self, cursor: Cursor, keep: tuple[int, int]) -> None: ...
        def _changed(self, cursor: Cursor) -> None: ...
        def _next_seq(self, watched: str) -> int: ...
        def _open(self, path: str, sibling: bool = False) -> OpenFile | None: ...
        def _new_cursor(self, watched: str, name: str, opened: OpenFile, state: CursorState) -> Cursor: ...

    def _scan(self, watched: str) -> list[Sibling]:
        names = {Path(cursor.name) for cursor in self._cursors[watched] if cursor.name != watched}
        followed = {Path(path) for path in self._cursors}  # another followed log is never a rotated copy
        scan = [sibling for sibling in list_siblings(Path(watched), self.siblings, names)
                if sibling.path not in followed]
        self._scanned = {(sibling.device, sibling.inode) for sibling in scan}
        return scan

    def _identify(self, watched: str, scan: list[Sibling]) -> dict[Path, Record]:
        """Which siblings hold the files of rotated cursors (by inode, else a copy with the head) and which
        hold known files (likewise: a known file compressed since is known by its content's head). Files with
        a head go first: an empty head proves nothing, and a deleted file's inode is soon someone else's."""
        self._located, self._copies = {}, {}
        taken: dict[Path, Record] = {}
        self._taken = taken
        by_id: dict[tuple[int, int], Sibling] = {}
        for sibling in sorted(scan, key=lambda s: str(s.path)):
            by_id.setdefault((sibling.device, sibling.inode), sibling)
        rotated = [cursor for cursor in self._cursors[watched] if cursor.state == "rotated"]
        self._shifted = False
        current = self._current(watched)
        if current is not None and (current.device, current.inode) in by_id:  # LOG renamed while it was listed
            taken[by_id[(current.device, current.inode)].path] = current
        for strong in (True, False):
            for cursor in (cursor for cursor in rotated if (cursor.head_len > 0) == strong):
                sibling = by_id.get((cursor.device, cursor.inode))
                if (sibling is not None and sibling.path not in taken and self._holds(sibling, cursor, cursor.offset)
                        and (strong or not self._heads.compressed(sibling))):  # a gzip is never a file seen plain
                    taken[sibling.path] = cursor
                    self._located[cursor.file_id] = sibling
                    self._shifted |= cursor.name != str(sibling.path)
            for known in [known for known in self._known[watched].values() if (known.head_len > 0) == strong]:
                sibling = by_id.get((known.device, known.inode))
                if (sibling is not None and sibling.path not in taken and self._holds(sibling, known, 0)
                        and (strong or sibling.size == known.size)):  # an empty file known: still that empty file
                    if strong and sibling.size > known.size and not self._heads.compressed(sibling):
                        taken[sibling.path] = self._reopen(known, sibling)  # written to since: read on
                        continue
                    taken[sibling.path] = known
                    if known.name != str(sibling.path):
                        known.name = str(sibling.path)
                        self._shifted = True
                        self._know(known)
            if strong:
                self._copies_found(watched, scan, rotated, taken)
        return taken

    def _copies_found(self, watched: str, scan: list[Sibling], rotated: list[Cursor],
                      taken: dict[Path, Record]) -> None:
        """Rotated cursors and known files not found by inode, found by a copy with their head."""
        for cursor in rotated:
            if cursor.file_id in self._located:
                continue
            copy = self._copy_of(cursor, scan, taken)
            if copy is None:
                continue
            taken[copy.path] = cursor
            if self._held(cursor) is not None:
                self._copies[cursor.file_id] = copy  # read on from the handle, which has all of it
            else:
                self._release(cursor, (copy.device, copy.inode))
                cursor.name, cursor.device, cursor.inode = str(copy.path), copy.device, copy.inode
                self._located[cursor.file_id] = copy
                self._changed(cursor)
        accounted = {id(record) for record in taken.values()}
        for known in [known for known in self._known[watched].values() if id(known) not in accounted]:
            copy = self._copy_of(known, scan, taken)
            if copy is not None:  # e.g. compressed since: the same content under another inode
                self._forget(known)
                moved = replace(known, device=copy.device, inode=copy.inode, name=str(copy.path))
                self._known[watched][(copy.device, copy.inode)] = moved
                self._know(moved)
                taken[copy.path] = moved

    def _reopen(self, known: KnownFile, sibling: Sibling) -> Cursor:
        """A known file that grew (a writer that had not reopened yet): followed again from where it was left."""
        self._forget(known)
        cursor = Cursor(uuid.uuid4().hex, known.watched, str(sibling.path), sibling.device, sibling.inode,
                        known.head_sha, known.head_len, known.size, known.lineno, "rotated",
                        seen_size=sibling.size, seq=self._next_seq(known.watched))
        self._cursors[known.watched].append(cursor)
        self._located[cursor.file_id] = sibling
        self._changed(cursor)
        return cursor

    def _empty(self, sibling: Sibling) -> bool:
        return sibling.size == 0 or self._heads.digest(sibling, 1) is None

    def _holds(self, sibling: Sibling, record: Record, offset: int) -> bool:
        """`sibling` still holds `record`'s file: the same head, and (uncompressed) at least `offset` bytes."""
        if not self._heads.compressed(sibling) and sibling.size < max(offset, record.head_len):
            return False
        return self._heads.digest(sibling, record.head_len) == record.head_sha

    def _copy_of(self, record: Record, scan: list[Sibling], taken: dict[Path, Record]) -> Sibling | None:
        """A sibling (not the record's inode) with its head and, uncompressed, at least as many bytes as were
        read (a cursor) or finished (a known file); plain copies first, then the newest."""
        if record.head_len == 0:
            return None  # an empty head matches anything
        need = record.offset if isinstance(record, Cursor) else record.size
        matches = [(not self._heads.compressed(sibling), sibling.mtime_ns, str(sibling.path), sibling)
                   for sibling in scan if sibling.path not in taken
                   and (sibling.device, sibling.inode) != (record.device, record.inode)
                   and self._holds(sibling, record, need)]
        return max(matches, key=lambda match: match[:3])[3] if matches else None

    def _discover(self, watched: str, scan: list[Sibling], taken: dict[Path, Record], retired: Cursor | None) -> None:
        """LOG changed: the siblings newer than the newest accounted for are files that were LOG in between."""
        place = (self._located.get(retired.file_id) or self._copies.get(retired.file_id)) if retired else None
        keyed = [(sibling, sibling.key) for sibling in scan if sibling.key is not None]
        # Files known by an empty head do not bound what is new: an empty file's inode is soon another's, and
        # the copies of a LOG empty when last seen (copy-truncate) sit behind its own new place.
        known = [(sibling, key) for sibling, key in keyed if sibling.path in taken and taken[sibling.path].head_len]
        unseen = [(sibling, key) for sibling, key in keyed if sibling.path not in taken]
        numbered = [key for sibling, key in known if key[0] == 0 and sibling is not place]
        ascending = bool(place is not None and place.key is not None and place.key[0] == 0 and numbered
                         and all(key < place.key for key in numbered))  # the highest number is the newest

        def rank(key: OrderKey) -> OrderKey:
            return (0, tuple(-part for part in key[1])) if key[0] == 0 and ascending else key

        newer: list[tuple[Sibling, OrderKey]] = []
        for scheme in {key[0] for _, key in unseen}:
            anchors = [rank(key) for _, key in known if key[0] == scheme]
            if anchors:
                newer += [(s, key) for s, key in unseen if key[0] == scheme and rank(key) < min(anchors)]
            elif watched not in self._first_look:
                newer += [(s, key) for s, key in unseen if key[0] == scheme]
        for sibling, _ in sorted(newer, key=lambda pair: rank(pair[1]), reverse=True):  # oldest first
            if self._empty(sibling):
                continue  # nothing to read: known as an empty file (below)
            opened = self._open(str(sibling.path), sibling=True)
            if opened is None or (opened.device, opened.inode) != (sibling.device, sibling.inode):
                continue
            cursor = self._new_cursor(watched, str(sibling.path), opened, "rotated")
            if opened.compressed:  # how much it holds is not known before it is read
                cursor.looked = False
            else:
                cursor.seen_size = opened.size
            self._cursors[watched].append(cursor)
            taken[sibling.path] = cursor
            self._located[cursor.file_id] = sibling
        passed = sorted(str(sibling.path) for sibling, _ in unseen if sibling.path not in taken
                        and not self._empty(sibling))
        if passed and (retired is not None or watched not in self._first_look):
            self._pending.notes.append(f"{watched} rotated; {', '.join(passed)} appeared since the last pass but "
                                       "sit older than files already read in the rotation order: not read")
        if retired is not None and place is not None and not ascending:
            self._holes(watched, scan, retired, place)

    def _holes(self, watched: str, scan: list[Sibling], retired: Cursor, place: Sibling) -> None:
        """LOG became LOG.k: LOG.1 … LOG.k-1 were LOG in between; any of them missing is a gap."""
        match = re.fullmatch(re.escape(Path(watched).name) + r"([.\-_])(\d+)(\.gz)?", place.path.name)
        if match is None:
            return
        present = {sibling.key[1] for sibling in scan if sibling.key is not None and sibling.key[0] == 0}
        for index in range(1, int(match.group(2))):
            if (index,) not in present:
                name = str(place.path.with_name(f"{Path(watched).name}{match.group(1)}{index}"))
                self._record(Gap(gap_id(watched, retired.file_id, "hole", index), watched, name, 0, 0, 0, None, None,
                                 "rotated through the followed name after the last pass, and gone before it was "
                                 "read", utc_now()))

    def _remember(self, watched: str, scan: list[Sibling], taken: dict[Path, Record]) -> None:
        """Account for every sibling in the chain: known files that are gone are forgotten, siblings not read
        (there before the first look, or passed over as older) are known from now on."""
        accounted = {id(record) for record in taken.values()}
        for known in list(self._known[watched].values()):
            if id(known) not in accounted and (known.device, known.inode) != LOOKED:
                self._forget(known)
        reading = {(cursor.device, cursor.inode) for cursor in self._cursors[watched]}
        for sibling in scan:
            if sibling.path in taken or sibling.key is None or (sibling.device, sibling.inode) in reading:
                continue
            head = self._heads.head(sibling, HEAD_BYTES)
            if head is not None:
                known = KnownFile(watched, sibling.device, sibling.inode, digest(head), len(head), sibling.size,
                                  str(sibling.path))
                self._known[watched][(sibling.device, sibling.inode)] = known
                self._know(known)

    def _know(self, known: KnownFile) -> None:
        key = (known.watched, known.device, known.inode)
        self._pending.forgotten.pop(key, None)
        self._pending.known[key] = known

    def _forget(self, known: KnownFile) -> None:
        key = (known.watched, known.device, known.inode)
        if self._known[known.watched].get((known.device, known.inode)) is known:
            del self._known[known.watched][(known.device, known.inode)]
        self._pending.known.pop(key, None)
        self._pending.forgotten[key] = None

    def _record(self, gap: Gap) -> None:
        self._pending.gaps.append(gap)
        self._pending.notes.append(gap.text())
