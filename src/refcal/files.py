"""Files and digests as refcal reads and writes them: strict JSONL input (every bad line names its file and
line), atomic writes (a reader never sees half a file), canonical JSON and the `sha256:` digests taken over it,
and file digests."""

from __future__ import annotations

import codecs
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
    """(1-based physical line number, parsed value) for each non-blank line of an existing file; a UTF-8 byte
    order mark at the start of the file is skipped."""
    where = str(path)
    if not path.is_file():
        raise InputFileError("no such file" if not path.exists() else "not a file", path=where)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputFileError(f"cannot read: {error.strerror or error}", path=where) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            raise InputFileError(f"line over the {MAX_LINE_BYTES:,}-byte limit", path=where, line=number)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputFileError(f"not UTF-8 (byte {error.start} of the line)", path=where, line=number) from None
        yield number, parse_json(text, where, number)


MAX_JSON_DEPTH = 64
"""Deeper nesting than this in an input line is refused: no field refcal reads goes deeper than a few levels, and
Python's parser would otherwise stop with a RecursionError (or, a little less deep, something later would)."""


def parse_json(text: str, path: str, line: int, field: str | None = None, *,
               error: type[InputFileError] = InputFileError, what: str = "") -> Any:
    """One JSON value of an input file (a line, a CSV cell): an InputFileError (or the subclass `error`) naming
    file, line and field for invalid JSON or nesting deeper than MAX_JSON_DEPTH."""
    kind = f"invalid JSON {what}".rstrip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as problem:
        raise error(f"{kind}: {problem.msg} at column {problem.colno}", path=path, line=line,
                    field=field) from None
    except RecursionError:
        value, depth = None, MAX_JSON_DEPTH + 1
    else:
        depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise error(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", path=path, line=line,
                    field=field or _too_deep_key(text)) from None
    return value


def _too_deep_key(text: str) -> str | None:
    """The top-level key whose value nests too deeply, read off the raw text (it may not parse at all)."""
    depth, key, last, start, in_string, escaped = 0, None, None, 0, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string, last = False, text[start:index]
        elif char == '"':
            in_string, start = True, index + 1
        elif char == ":" and depth == 1:
            key = last
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return key
        elif char in "]}":
            depth -= 1
    return None


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar: 0), counted without recursion and stopping past the limit."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((child, depth) for child in (current.values() if isinstance(current, dict) else current))
    return deepest


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
