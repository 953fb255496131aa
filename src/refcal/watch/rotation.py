"""A followed log's rotation siblings: which files count as its rotated copies, their order (newest first), and
how their bytes are read — gzip-compressed ones (`app.log.2.gz`) as their decompressed content, streamed, so a
file is known by the head of what it holds whether it is compressed or not.

Siblings are the files that glob patterns name relative to the followed file's folder, with `{name}` for its
file name, `{stem}` for the name less its last suffix and `{suffix}` for that suffix (DEFAULT_SIBLINGS: `app.log*`,
`app-*`, `app.*`). A sibling's place in the rotation chain comes from what its name adds to the followed one
(a compression suffix aside): a small number is an index, larger = older (`app.log.1` is newer than
`app.log.2.gz`); anything else — a date, a timestamp (six digits or more) — sorts as text, larger = newer
(`app.log-20260102` is newer than `app.log-20260101`). Names without such a mark have no place: they are
searched for a file's identity, never read as unseen rotations.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SIBLINGS = ("{name}*", "{stem}-*", "{stem}.*")
"""Glob patterns for a log's rotated copies, relative to its folder."""
COMPRESSED_SUFFIXES = (".gz",)
GZIP_MAGIC = b"\x1f\x8b"
RAW_BYTES = 1 << 16
"""Compressed bytes read at a time."""
OUT_BYTES = 1 << 20
"""Decompressed bytes produced at a time (bounds what a hostile archive can make us hold)."""
_DIGITS = re.compile(r"^\d+$")

OrderKey = tuple[int, tuple[int, ...]]
"""(scheme, value): keys of one scheme compare, smaller = newer; 0 = numbered, 1 = dated."""


@dataclass(frozen=True)
class Sibling:
    """A file next to a followed log, as listed at one pass."""

    path: Path
    key: OrderKey | None
    """Its place in the rotation chain (None: its name gives none)."""
    device: int
    inode: int
    size: int
    """Bytes on disk (compressed bytes for a compressed file)."""
    mtime_ns: int


def rotation_key(watched: Path, path: Path) -> OrderKey | None:
    """Where `path` sits in `watched`'s rotation chain (see the module docstring), or None."""
    name = path.name
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    mark = None
    if name.startswith(watched.name) and len(name) > len(watched.name):
        mark = name[len(watched.name):]
    elif watched.suffix and name.startswith(watched.stem) and name.endswith(watched.suffix):
        mark = name[len(watched.stem): len(name) - len(watched.suffix)]
    if not mark or mark[0] not in ".-_":
        return None
    mark = mark.lstrip(".-_")
    if not mark:
        return None
    if _DIGITS.match(mark) and len(mark) < 6:
        return (0, (int(mark),))
    return (1, tuple(-ord(character) for character in mark))


def list_siblings(watched: Path, patterns: Sequence[str], extra: Iterable[Path] = ()) -> list[Sibling]:
    """The regular files `patterns` name next to `watched` (and the `extra` paths), never `watched` itself."""
    values = {"name": watched.name, "stem": watched.stem, "suffix": watched.suffix}
    paths: set[Path] = set(extra)
    for pattern in patterns:
        try:
            paths.update(watched.parent.glob(pattern.format(**values)))
        except (OSError, ValueError):
            continue
    found = []
    for path in paths:
        if path == watched:
            continue
        try:
            status = path.stat()
        except OSError:
            continue
        if not stat.S_ISREG(status.st_mode):
            continue
        found.append(Sibling(path, rotation_key(watched, path), status.st_dev, status.st_ino, status.st_size,
                             status.st_mtime_ns))
    return found


def is_compressed(fd: int) -> bool:
    return os.pread(fd, 2, 0) == GZIP_MAGIC


class Inflater:
    """The decompressed content of a gzip file (members one after another), read forward through `pread`
    without holding more than one chunk; reading before the last position starts over from the top."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._restart()

    def _restart(self) -> None:
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._raw = 0
        self._start = 0
        self._buffer = b""
        self._members = 0
        self._member_out = 0
        self.ended = False
        self.complete = False
        """Ended at a gzip member's end (False: the stream stops short — still being written, or broken)."""

    def pread(self, length: int, position: int) -> bytes:
        if position < self._start:
            self._restart()
        while self._start + len(self._buffer) < position + length and not self.ended:
            self._more()
            if self._start + len(self._buffer) <= position:  # all before what is asked: let it go
                self._start += len(self._buffer)
                self._buffer = b""
        if self._start < position:
            self._buffer = self._buffer[position - self._start:]
            self._start = position
        return self._buffer[:length]

    def _more(self) -> None:
        try:
            if self._z.eof:
                data = self._z.unused_data or self._read()
                if not data:
                    self.ended = self.complete = True
                    return
                self._members += 1
                self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
                self._member_out = 0
            else:
                data = self._z.unconsumed_tail or self._read()
                if not data:
                    self.ended = True  # no end-of-stream marker (yet)
                    return
            out = self._z.decompress(data, OUT_BYTES)
        except zlib.error:
            self.ended = True
            self.complete = self._members > 0 and self._member_out == 0  # padding after a whole member
            return
        self._member_out += len(out)
        self._buffer += out

    def _read(self) -> bytes:
        data = os.pread(self.fd, RAW_BYTES, self._raw)
        self._raw += len(data)
        return data


def read_head(fd: int, length: int, compressed: bool) -> bytes:
    """Up to `length` bytes from the start of the content (decompressed when `compressed`)."""
    if length <= 0:
        return b""
    return Inflater(fd).pread(length, 0) if compressed else os.pread(fd, length, 0)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Heads:
    """Head digests of siblings, by identity and state (device, inode, size, mtime), so that an unchanged
    file is not opened again at every pass."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._digests: dict[tuple[int, int, int, int, int], str | None] = {}
        self._compressed: dict[tuple[int, int, int, int], bool] = {}

    def compressed(self, sibling: Sibling) -> bool:
        key = (sibling.device, sibling.inode, sibling.size, sibling.mtime_ns)
        if key not in self._compressed:
            self._read(sibling, 0)
        return self._compressed.get(key, False)

    def digest(self, sibling: Sibling, length: int) -> str | None:
        """The sha256 of the first `length` bytes of its content; None when it holds fewer (or is gone)."""
        key = (sibling.device, sibling.inode, sibling.size, sibling.mtime_ns, length)
        if key not in self._digests:
            self._read(sibling, length)
        return self._digests.get(key)

    def head(self, sibling: Sibling, length: int) -> bytes | None:
        """Up to `length` bytes of its content (None when it cannot be read as the file listed)."""
        try:
            fd = os.open(sibling.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) != (sibling.device, sibling.inode):
                return None
            return read_head(fd, length, is_compressed(fd))
        finally:
            os.close(fd)

    def _read(self, sibling: Sibling, length: int) -> None:
        if len(self._digests) > self.LIMIT:
            self._digests.clear()
            self._compressed.clear()
        try:
            fd = os.open(sibling.path, os.O_RDONLY)
        except OSError:
            return
        try:
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) != (sibling.device, sibling.inode):
                return
            compressed = is_compressed(fd)
            self._compressed[(sibling.device, sibling.inode, sibling.size, sibling.mtime_ns)] = compressed
            data = read_head(fd, length, compressed)
            self._digests[(sibling.device, sibling.inode, sibling.size, sibling.mtime_ns, length)] = (
                digest(data) if len(data) == length else None)
        finally:
            os.close(fd)
