"""Reading JSONL input files strictly: every bad line stops the read with the file and line named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refcal.errors import InputFileError

MAX_LINE_BYTES = 1_000_000


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
