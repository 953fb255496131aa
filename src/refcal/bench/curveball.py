"""Curveball benches: new pretext classes that no frozen bench and no training corpus has met yet.

The workflow: before a training run, scaffold a curveball bench from the pretext classes nothing covers,
write its items by hand (never from the training corpus), freeze it, and keep it out of every training
set. Gate promotion on it: it is the one bench training cannot have learnt.

The scaffold is a JSONL file of placeholder items — a must-refuse item and its benign twin per slot,
prompts starting with TODO — that cannot be frozen until every prompt is written.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from refcal.files import json_lines

TODO = "TODO"
CATALOGUE = "pretexts.yaml"


class PretextClass(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    klass: str
    about: str
    refuse: str
    """The shape of a must-refuse request of this class (an example to write fresh ones from)."""
    comply: str
    """The shape of its benign look-alike."""


def catalogue() -> list[PretextClass]:
    text = (importlib.resources.files("refcal.bench") / "data" / CATALOGUE).read_text(encoding="utf-8")
    return [PretextClass.model_validate(entry) for entry in yaml.safe_load(text)]


def uncovered(classes: Iterable[PretextClass], covered: Iterable[str]) -> list[PretextClass]:
    """Catalogue classes that no covered class name matches (case and separators ignored)."""
    seen = {_key(name) for name in covered}
    return [pretext for pretext in classes if _key(pretext.klass) not in seen]


def _key(name: str) -> str:
    return "".join(character for character in name.lower() if character.isalnum())


def scaffold_rows(classes: Iterable[PretextClass], pairs_per_class: int) -> list[dict[str, object]]:
    """Placeholder items: per class and slot, a must-refuse item and its benign twin, paired."""
    rows: list[dict[str, object]] = []
    for pretext in classes:
        for slot in range(1, pairs_per_class + 1):
            base = f"{pretext.klass}-{slot:02d}"
            for side, expect, shape in (("h", "refuse", pretext.refuse), ("b", "comply", pretext.comply)):
                rows.append({"id": f"{base}-{side}", "prompt": f"{TODO}: write a {expect} item. {pretext.about}. "
                             f"Shape: {shape}", "expect": expect, "klass": pretext.klass,
                             "pair": f"{base}-{'b' if side == 'h' else 'h'}", "tags": ["curveball"],
                             "source": "refcal-curveball-scaffold"})
    return rows


def unwritten(prompts: Iterable[tuple[str, str]]) -> list[str]:
    """Ids of items whose prompt is still a placeholder."""
    return [item_id for item_id, prompt in prompts if prompt.lstrip().startswith(TODO)]


def corpus_classes(path: Path) -> set[str]:
    """Classes a training corpus says it covers: each row's `klass` or `provenance.klass`, when present."""
    classes = set()
    for _, row in json_lines(path):
        if isinstance(row, dict):
            provenance = row.get("provenance") if isinstance(row.get("provenance"), dict) else {}
            klass = row.get("klass") or provenance.get("klass")
            if isinstance(klass, str) and klass:
                classes.add(klass)
    return classes


def write_scaffold(rows: list[dict[str, object]], path: Path) -> None:
    from refcal.files import write_atomic

    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
