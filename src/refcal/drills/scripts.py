"""Multi-turn scripts for slow drills: a seed request, then a sequence of pressure moves.

Turn 1 sends the seed item as written; each later turn sends one move, whose text may quote the request
(`{request}`). Every move names the kind of pressure it applies, so a break can be traced to the move and
the kind that caused it. Scripts are read from YAML or JSON; a bad file names the file, the step and the
field, and nothing is run.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path

from refcal.errors import InputFileError
from refcal.records import PRESSURE_KINDS, Move, Script

MIN_TURNS, MAX_TURNS = 3, 8
"""A script has 3 to 8 turns in all: the seed request and 2 to 7 moves."""
SHIPPED = "scripts.yaml"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def load_scripts(path: str | Path) -> tuple[Script, ...]:
    """Scripts from a YAML (.yaml/.yml) or JSON file: a list of {name, moves: [{kind, text}], note}."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputFileError("no such file", path=where)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(f"not UTF-8 (byte {error.start})", path=where) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # yaml.YAMLError or json.JSONDecodeError, with their own positions
        raise InputFileError(f"cannot parse: {error}", path=where) from None
    if not isinstance(data, list) or not data:
        raise InputFileError("expected a non-empty list of scripts", path=where)
    scripts = [_script(entry, where, index) for index, entry in enumerate(data, start=1)]
    names = [script.name for script in scripts]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate:
        raise InputFileError(f"script name '{duplicate}' is used twice", path=where, field="name")
    return tuple(scripts)


def _script(entry: object, where: str, number: int) -> Script:
    place = f"script {number}"
    if not isinstance(entry, dict):
        raise InputFileError(f"{place}: expected a mapping, got {type(entry).__name__}", path=where)
    for field in ("name", "moves"):
        if field not in entry:
            raise InputFileError(f"{place}: missing required field", path=where, field=field)
    unknown = set(entry) - {"name", "moves", "note"}
    if unknown:
        raise InputFileError(f"{place}: unknown fields {sorted(unknown)}", path=where, field=sorted(unknown)[0])
    if not isinstance(entry["name"], str) or not entry["name"].strip():
        raise InputFileError(f"{place}: must be a non-empty string", path=where, field="name")
    place = f"script '{entry['name']}'"
    moves = entry["moves"]
    if not isinstance(moves, list) or not MIN_TURNS - 1 <= len(moves) <= MAX_TURNS - 1:
        raise InputFileError(f"{place}: moves must be a list of {MIN_TURNS - 1} to {MAX_TURNS - 1} steps "
                             f"(a script has {MIN_TURNS}–{MAX_TURNS} turns with the seed)", path=where, field="moves")
    parsed = []
    for step, move in enumerate(moves, start=1):
        if not isinstance(move, dict):
            raise InputFileError(f"{place}, step {step}: expected a mapping", path=where, field="moves")
        for field in ("kind", "text"):
            if field not in move:
                raise InputFileError(f"{place}, step {step}: missing required field", path=where, field=field)
        if move["kind"] not in PRESSURE_KINDS:
            raise InputFileError(f"{place}, step {step}: unknown pressure kind '{move['kind']}' (known: "
                                 f"{', '.join(PRESSURE_KINDS)})", path=where, field="kind")
        if not isinstance(move["text"], str) or not move["text"].strip():
            raise InputFileError(f"{place}, step {step}: must be a non-empty string", path=where, field="text")
        unknown_placeholders = sorted(set(_PLACEHOLDER.findall(move["text"])) - {"request"})
        if unknown_placeholders:
            raise InputFileError(f"{place}, step {step}: unknown placeholder {unknown_placeholders} "
                                 "(only {request})", path=where, field="text")
        extra = set(move) - {"kind", "text"}
        if extra:
            raise InputFileError(f"{place}, step {step}: unknown fields {sorted(extra)}", path=where,
                                 field=sorted(extra)[0])
        parsed.append(Move(kind=move["kind"], text=move["text"]))
    return Script(name=entry["name"], moves=tuple(parsed), note=str(entry.get("note", "")))


def shipped_scripts() -> tuple[Script, ...]:
    """The library of scripts written for refcal."""
    return load_scripts(Path(str(importlib.resources.files("refcal.drills") / "data" / SHIPPED)))
