"""Read benches from JSONL and CSV files, stopping at the first bad line with file, line and field.

Nothing here sends a request: a bench is read and checked whole before any drill starts.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from refcal.bench.items import Bench, Item, Source
from refcal.errors import BenchError
from refcal.files import parse_json

MAX_LINE_BYTES = 1_000_000
"""A line longer than this is a broken file, not a prompt."""
MAX_CELL_CHARS = MAX_LINE_BYTES
"""A CSV cell longer than this (a quoted cell may span lines) is refused, as a JSONL line of that length is."""

ITEM_FIELDS = ("id", "prompt", "messages", "expect", "klass", "pair", "tags", "source", "packet")


def load_jsonl(path: str | Path, name: str | None = None) -> Bench:
    """Load a bench from JSON Lines: one item object per line (blank lines are skipped)."""
    path = Path(path)
    rows = list(_jsonl_rows(path))
    items = [_validate(row, path, line) for line, row in rows]
    return finish_bench(items, name or path.stem, path, lines=[line for line, _ in rows])


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
    items, lines = [], []
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # cells are bounded below (MAX_CELL_CHARS), with their line
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        if not header:
            raise BenchError("empty file: no header row", path=str(path), line=1)
        _check_header(header, columns, path)
        for record in reader:
            line = _first_line(record, reader.line_num)
            if None in record or any(value is None for value in record.values()):
                raise BenchError("wrong number of columns", path=str(path), line=line)
            row = _csv_row(record, columns, expect_values, path, line)
            items.append(_validate(row, path, line))
            lines.append(line)
    except csv.Error as error:
        raise BenchError(f"not valid CSV: {error}", path=str(path), line=reader.line_num or 1) from None
    finally:
        csv.field_size_limit(limit)
    return finish_bench(items, name or path.stem, path, lines=lines)


def _first_line(record: dict[str | None, Any], last_line: int) -> int:
    """The physical line a CSV record starts on, from the line it ends on and the line breaks quoted in its cells
    (blank lines before it are skipped by the reader, so the previous record's end does not tell)."""
    cells = [value for value in record.values() if isinstance(value, str)]
    cells += [cell for value in record.values() if isinstance(value, list) for cell in value]  # extra cells
    breaks = sum(cell.count("\n") + cell.count("\r") - cell.count("\r\n") for cell in cells)
    return last_line - breaks


def _check_header(header: list[str], columns: Mapping[str, str], path: Path) -> None:
    """Every mapped column is in the header, and no column an item field is read from appears twice."""
    for field, column in columns.items():
        if column not in header:
            raise BenchError(f"column '{column}' (mapped to '{field}') is not in the header {header}",
                             path=str(path), line=1, field=field)
    repeated = {column for column, count in Counter(header).items() if count > 1}
    for field in ITEM_FIELDS:
        column = columns.get(field, field)
        if column in repeated:
            raise BenchError(f"column '{column}' appears {header.count(column)} times in the header: which one "
                             "is meant is ambiguous", path=str(path), line=1, field=field)


def finish_bench(items: list[Item], name: str, origin: str | Path | None, lines: list[int] | None = None) -> Bench:
    """Check what no single line can show (empty bench, duplicate ids, dangling pairs) and build the bench.

    `lines`: each item's physical line in its file, which errors then name; without it, errors name the item's
    position (rows from a dataset)."""
    where = str(origin) if origin is not None else None
    if not items:
        raise BenchError("the bench has no items", path=where)
    places = lines if lines is not None and len(lines) == len(items) else list(range(1, len(items) + 1))
    seen_as = "on line" if places is lines else "at item"
    seen: dict[str, int] = {}
    for place, item in zip(places, items, strict=True):
        if item.id in seen:
            raise BenchError(f"duplicate id '{item.id}' (first seen {seen_as} {seen[item.id]})",
                             path=where, line=place, field="id")
        seen[item.id] = place
    for place, item in zip(places, items, strict=True):
        if item.pair is not None and item.pair not in seen:
            raise BenchError(f"pair '{item.pair}' names no item of this bench", path=where, line=place,
                             field="pair")
    return Bench(name=name, items=tuple(items), origin=where)


def items_from_rows(rows: Iterable[dict[str, Any]], origin: str) -> list[Item]:
    """Validate already-parsed rows (from `datasets`, say); `line` in errors is the row number."""
    return [_validate(row, origin, index) for index, row in enumerate(rows, start=1)]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise BenchError("no such file" if not path.exists() else "not a file", path=str(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BenchError(f"cannot read: {error.strerror or error}", path=str(path)) from None
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
        row = parse_json(line, str(path), number, error=BenchError)
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
        if len(value) > MAX_CELL_CHARS:
            raise BenchError(f"cell is {len(value):,} characters, over the {MAX_CELL_CHARS:,}-character limit",
                             path=str(path), line=line, field=field)
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
    return parse_json(value, str(path), line, field, error=BenchError, what="in cell")


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
