"""Response files and label files for judges: `{"id", "prompt", "response", ...}` per line, plus `label`
in label files (`completion` is read as `response`, as in XSTest's files). Everything is read and
checked before anything is judged or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refcal.errors import InputFileError
from refcal.files import json_lines
from refcal.records import Label

LABEL_SYNONYMS: dict[str, Label] = {
    "refusal": "refusal", "full_refusal": "refusal", "partial_refusal": "partial_refusal",
    "compliance": "compliance", "full_compliance": "compliance",
}


class ResponseRow(BaseModel):
    """One response to judge; unknown fields are carried through to the output."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    prompt: str
    response: str
    label: Label | None = None
    """The human verdict, in label files."""


def read_rows(path: str | Path, require_label: bool = False) -> list[ResponseRow]:
    """Read a JSONL file of responses (and labels); stop at the first bad line with file, line and field."""
    path = Path(path)
    where = str(path)
    rows: list[ResponseRow] = []
    seen: set[str] = set()
    for number, record in json_lines(path):
        rows.append(_row(record, where, number, require_label, seen))
    if not rows:
        raise InputFileError("the file has no rows", path=where)
    return rows


def _row(record: Any, where: str, number: int, require_label: bool, seen: set[str]) -> ResponseRow:
    if not isinstance(record, dict):
        raise InputFileError(f"expected a JSON object, got {type(record).__name__}", path=where, line=number)
    if "response" not in record and "completion" in record:
        record = {**record, "response": record.pop("completion")}  # XSTest's completion files
    for field in ("id", "prompt", "response", *(("label",) if require_label else ())):
        if field not in record:
            raise InputFileError("missing required field", path=where, line=number, field=field)
    for field in ("id", "prompt", "response", "label"):
        if field in record and not isinstance(record[field], str):
            raise InputFileError(f"must be a string, got {type(record[field]).__name__}", path=where,
                                 line=number, field=field)
    if not record["id"]:
        raise InputFileError("must not be empty", path=where, line=number, field="id")
    record = dict(record)
    if "label" in record:
        if record["label"] not in LABEL_SYNONYMS:
            raise InputFileError(f"unknown label '{record['label']}' (known: {', '.join(LABEL_SYNONYMS)})",
                                 path=where, line=number, field="label")
        record["label"] = LABEL_SYNONYMS[record["label"]]
    if record["id"] in seen:
        raise InputFileError(f"duplicate id '{record['id']}'", path=where, line=number, field="id")
    seen.add(record["id"])
    try:
        return ResponseRow.model_validate(record)
    except ValidationError as error:  # a backstop: the checks above name every field the model checks
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InputFileError(first["msg"], path=where, line=number, field=field) from None
