"""Reading a followed file: the open file (plain, or a gzip sibling read as its decompressed content through
refcal.watch.rotation.Inflater) and its bytes split into complete lines, one chunk at a time, a line longer than
the limit cut to its first KEPT_BYTES and flagged (never held whole)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from refcal.watch.rotation import Inflater, digest

KEPT_BYTES = 4096
"""What is kept of a line over the limit."""


def head_digest(handle: BinaryIO, length: int) -> str:
    return digest(os.pread(handle.fileno(), length, 0))


@dataclass
class OpenFile:
    """A file being read, with the handle the tail holds on it; a compressed one reads as its content."""

    handle: BinaryIO
    device: int
    inode: int
    size: int
    """Bytes on disk (compressed ones for a compressed file)."""
    compressed: bool = False
    inflater: Inflater | None = None

    def read(self, length: int, position: int) -> bytes:
        if not self.compressed:
            return os.pread(self.handle.fileno(), length, position)
        if self.inflater is None:
            self.inflater = Inflater(self.handle.fileno())
        return self.inflater.pread(length, position)

    def head(self, length: int) -> bytes:
        return Inflater(self.handle.fileno()).pread(length, 0) if self.compressed else self.read(length, 0)

    @property
    def complete(self) -> bool:
        """Read to its end (a compressed file: to an end-of-stream marker, not just to where the data stops)."""
        return not self.compressed or (self.inflater is not None and self.inflater.complete)


def split_lines(read: Callable[[int, int], bytes], offset: int, chunk_bytes: int, max_line_bytes: int
                ) -> Iterator[tuple[list[bytes], int, frozenset[int], bytes]]:
    """(complete lines, offset after them, indexes of cut lines, unterminated rest) per chunk read; the
    last tuple has no lines and the rest of the file after the last newline (cut if over-long)."""
    position = offset
    pending = b""
    skip_at = -1  # inside a line longer than max_line_bytes: the next byte to look at (its start is kept)
    while True:
        chunk = read(chunk_bytes, skip_at if skip_at >= 0 else position + len(pending))
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
            if len(data) > max_line_bytes:
                skip_at, pending = position + len(data), data[:KEPT_BYTES]
            else:
                pending = data
            continue
        lines = data[:cut].split(b"\n")
        too_long = frozenset(index for index, line in enumerate(lines) if len(line) > max_line_bytes)
        if too_long:
            lines = [line[:KEPT_BYTES] if index in too_long else line for index, line in enumerate(lines)]
        if b"\r" in data:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        position += cut + 1
        pending = data[cut + 1:]
        yield lines, position, too_long, pending
