"""Judges: response → verdict. Lanes share one small interface (see base.py)."""

from __future__ import annotations

from collections.abc import Callable

from refcal.judges.base import LABELS, Depth, Judge, Label, Verdict
from refcal.judges.markers import MarkersJudge

__all__ = ["JUDGES", "LABELS", "Depth", "Judge", "Label", "MarkersJudge", "Verdict", "make_judge"]

JUDGES: dict[str, Callable[[], Judge]] = {"markers": MarkersJudge}


def make_judge(name: str) -> Judge:
    """A judge by lane name."""
    if name not in JUDGES:
        raise ValueError(f"unknown judge '{name}' (known: {', '.join(JUDGES)})")
    return JUDGES[name]()
