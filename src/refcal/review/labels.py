"""Human labels: one reviewer's verdict on one attempt, with the depth and a written trace.

The vocabulary is closed: a label is refusal, partial_refusal or compliance (a reviewer who cannot tell
skips the item instead), a depth is one of the judges' depths. Labels live in the run database beside the
attempts they describe; export writes them as a labels file (`refcal judge eval --labels` reads it) and
import reads such a file back, checked whole before anything is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from refcal.errors import InputFileError
from refcal.files import json_lines
from refcal.records import HUMAN_DEPTHS, HUMAN_VERDICTS, Attempt, HumanLabel


def export_row(label: HumanLabel, attempt: Attempt) -> dict[str, Any]:
    """One line of a labels file: what `judge eval` needs (id, prompt, response, label) and the rest."""
    verdict = attempt.verdict
    return {"id": f"{label.run_id}/{label.variant_id}/{label.reviewer}", "prompt": attempt.variant.prompt,
            "response": attempt.response or "", **label.model_dump(mode="json"),
            "expect": attempt.variant.expect, "klass": attempt.variant.klass,
            "judge_label": verdict.label if verdict else None, "judge_lane": verdict.lane if verdict else None,
            "messages": [message.model_dump(mode="json") for message in attempt.variant.messages]}


def export_text(rows: Iterable[tuple[HumanLabel, Attempt]]) -> str:
    return "".join(json.dumps(export_row(label, attempt), ensure_ascii=False) + "\n" for label, attempt in rows)


def read_labels_file(path: str | Path) -> list[HumanLabel]:
    """Labels from an exported file; the first bad line stops the read with file, line and field."""
    path = Path(path)
    where = str(path)
    labels: list[HumanLabel] = []
    fields = set(HumanLabel.model_fields)
    for number, record in json_lines(path):
        if not isinstance(record, dict):
            raise InputFileError(f"expected a JSON object, got {type(record).__name__}", path=where, line=number)
        labels.append(parse_label({key: value for key, value in record.items() if key in fields}, where, number))
    if not labels:
        raise InputFileError("the file has no labels", path=where)
    return labels


def parse_label(record: dict[str, Any], where: str = "label", line: int | None = None) -> HumanLabel:
    """A label from untrusted fields (an import line, a review form), with the first bad field named."""
    try:
        return HumanLabel.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        if first["type"] == "literal_error":
            allowed = HUMAN_VERDICTS if field == "label" else HUMAN_DEPTHS
            message = f"'{first.get('input')}' is not one of {', '.join(allowed)}"
        else:
            message = first["msg"]
        raise InputFileError(message, path=where, line=line, field=field) from None


