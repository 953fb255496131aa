"""Read benches from JSONL and CSV files, stopping at the first bad line with file, line and field.

Nothing here sends a request: a bench is read and checked whole before any drill starts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from refcal.bench.items import Bench, Item, Source
from refcal.errors import BenchError

MAX_LINE_BYTES = 1_000_000
"""A line longer than this is a broken file, not a prompt."""

ITEM_FIELDS = ("id", "prompt", "messages", "expect", "klass", "pair", "tags", "source", "packet")


def load_jsonl(path: str | Path, name: str | None = None) -> Bench:
    """Load a bench from JSON Lines: one item object per line (blank lines are skipped)."""
    path = Path(path)
    items = [_validate(row, path, line) for line, row in _jsonl_rows(path)]
    return finish_bench(items, name or path.stem, path)


def load_csv(path: str | Path, columns: Mapping[str, str] | None = None,
             expect_values: Mapping[str, str] | None = None, name: str | None = None) -> Bench:
    """Load a bench from CSV with a header row.

    Args:
        path: The CSV file.
        columns: Item field → CSV column, for columns not named like the fields (e.g. {"klass": "type"}).
        expect_values: CSV value → `refuse`/`comply`, e.g. {"unsafe": "refuse", "safe": "comply"}.
        name: Bench name; the file stem by default.
    """
    path = Path(path)
    columns = dict(columns or {})
    unknown = set(columns) - set(ITEM_FIELDS)
    if unknown:
        raise BenchError(f"unknown item field(s) in column mapping: {sorted(unknown)}", path=str(path))
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    if not header:
        raise BenchError("empty file: no header row", path=str(path), line=1)
    for field, column in columns.items():
        if column not in header:
            raise BenchError(f"column '{column}' (mapped to '{field}') is not in the header {header}",
                             path=str(path), line=1, field=field)
    items = []
    line = reader.line_num
    for record in reader:
        if None in record or any(value is None for value in record.values()):
            raise BenchError("wrong number of columns", path=str(path), line=line + 1)
        row = _csv_row(record, columns, expect_values, path, line + 1)
        items.append(_validate(row, path, line + 1))
        line = reader.line_num
    return finish_bench(items, name or path.stem, path)


def finish_bench(items: list[Item], name: str, origin: str | Path | None) -> Bench:
    """Check what no single line can show (empty bench, duplicate ids, dangling pairs) and build the bench."""
    where = str(origin) if origin is not None else None
    if not items:
        raise BenchError("the bench has no items", path=where)
    seen: dict[str, int] = {}
    for index, item in enumerate(items, start=1):
        if item.id in seen:
            raise BenchError(f"duplicate id '{item.id}' (first seen at item {seen[item.id]})",
                             path=where, line=index, field="id")
        seen[item.id] = index
    for index, item in enumerate(items, start=1):
        if item.pair is not None and item.pair not in seen:
            raise BenchError(f"pair '{item.pair}' names no item of this bench", path=where, line=index,
                             field="pair")
    return Bench(name=name, items=tuple(items), origin=where)


def items_from_rows(rows: Iterable[dict[str, Any]], origin: str) -> list[Item]:
    """Validate already-parsed rows (from `datasets`, say); `line` in errors is the row number."""
    return [_validate(row, origin, index) for index, row in enumerate(rows, start=1)]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise BenchError("no such file", path=str(path))
    data = path.read_bytes()
    if not data.strip():
        raise BenchError("empty file", path=str(path), line=1)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise BenchError(f"line is {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit",
                             path=str(path), line=number)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BenchError(f"not UTF-8 (byte {error.start} of the line)", path=str(path),
                             line=number) from None
    return data.decode("utf-8-sig")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BenchError(f"invalid JSON: {error.msg} at column {error.colno}", path=str(path),
                             line=number) from None
        if not isinstance(row, dict):
            raise BenchError(f"expected a JSON object, got {type(row).__name__}", path=str(path),
                             line=number)
        yield number, row


def _csv_row(record: dict[str, str], columns: Mapping[str, str], expect_values: Mapping[str, str] | None,
             path: Path, line: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for field in ITEM_FIELDS:
        column = columns.get(field, field)
        value = record.get(column)
        if value is None or (value == "" and field not in ("prompt", "id", "expect")):
            continue
        row[field] = value
    for field in ("messages", "packet"):  # JSON in a cell
        if field in row:
            row[field] = _json_cell(row[field], path, line, field)
    if "tags" in row:
        row["tags"] = [tag.strip() for tag in row["tags"].split(";") if tag.strip()]
    if expect_values is not None and "expect" in row:
        if row["expect"] not in expect_values:
            raise BenchError(f"value '{row['expect']}' is not in the expect mapping {dict(expect_values)}",
                             path=str(path), line=line, field="expect")
        row["expect"] = expect_values[row["expect"]]
    return row


def _json_cell(value: str, path: Path, line: int, field: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise BenchError(f"invalid JSON in cell: {error.msg}", path=str(path), line=line,
                         field=field) from None


def _validate(row: dict[str, Any], path: str | Path, line: int) -> Item:
    try:
        return Item.model_validate(row)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "missing":
            message = "missing required field"
        elif first["type"] == "extra_forbidden":
            known = ITEM_FIELDS if len(first["loc"]) == 1 else tuple(Source.model_fields) \
                if first["loc"][0] == "packet" else None
            message = f"unknown field (known: {', '.join(known)})" if known else "unknown field"
        raise BenchError(message, path=str(path), line=line, field=field) from None
