"""Judges: response → verdict. Lanes share one small interface (see base.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from refcal.judges.base import LABELS, Depth, Judge, Label, Verdict
from refcal.judges.markers import MarkersJudge

__all__ = ["JUDGES", "LABELS", "TARGET_LANES", "Depth", "Judge", "Label", "MarkersJudge", "Verdict", "make_judge"]

if TYPE_CHECKING:
    from refcal.targets.base import Target

JUDGES: dict[str, Callable[[], Judge]] = {"markers": MarkersJudge}
TARGET_LANES = ("llm",)
"""Lanes played by a model: they need a judge target, started by the caller."""


def make_judge(name: str, judge_target: Target | None = None) -> Judge:
    """A judge by lane name; `llm` needs the target that plays the judge."""
    if name == "llm":
        if judge_target is None:
            raise ValueError("the llm lane needs a judge target (--judge-target SPEC, e.g. llamacpp:smollm2)")
        from refcal.judges.llm import LLMJudge

        return LLMJudge(judge_target)
    if name not in JUDGES:
        raise ValueError(f"unknown judge '{name}' (known: {', '.join([*JUDGES, *TARGET_LANES])})")
    return JUDGES[name]()
