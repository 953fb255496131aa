"""Files and digests as refcal reads and writes them: strict JSONL input (every bad line names its file and
line), atomic writes (a reader never sees half a file), canonical JSON and the `sha256:` digests taken over it,
and file digests."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refcal.errors import InputFileError

MAX_LINE_BYTES = 1_000_000


def canonical_json(value: Any) -> bytes:
    """The one canonical serialisation every digest is taken over: keys sorted, UTF-8 (not \\u escapes), no
    insignificant whitespace; values JSON cannot hold are written as `str(value)`."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def sha256_digest(value: Any) -> str:
    """`sha256:` and the hex digest of a value's canonical JSON (receipts, benches, stage keys, fingerprints)."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) for each non-blank line of an existing file."""
    where = str(path)
    if not path.is_file():
        raise InputFileError("no such file", path=where)
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            raise InputFileError(f"line over the {MAX_LINE_BYTES:,}-byte limit", path=where, line=number)
        try:
            yield number, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise InputFileError(f"not UTF-8 (byte {error.start} of the line)", path=where, line=number) from None
        except json.JSONDecodeError as error:
            raise InputFileError(f"invalid JSON: {error.msg} at column {error.colno}", path=where,
                                 line=number) from None


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
