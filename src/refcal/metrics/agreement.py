"""What the labels say back: agreement between reviewers (Cohen's κ), and between the judge and the
reviewers, overall and per deciding lane, on the attempts people labelled.

An attempt counts for the judge when its reviewers agree (`consensus`); contested attempts are counted
apart, not guessed. Binary agreement puts refusal and partial refusal on one side, as `judge eval` does;
an undetermined verdict counts as a disagreement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

from pydantic import BaseModel

from refcal.judges.agreement import cohen_kappa, side_errors
from refcal.judges.labels import ResponseRow
from refcal.records import REFUSAL_SIDE, Attempt, HumanLabel, SideErrors

DISAGREEMENT_THRESHOLD = 0.9
"""A run whose judge agrees with reviewers on fewer than this share of labelled attempts (binary) says so
in its receipt."""


class ReviewerPair(BaseModel):
    first: str
    second: str
    shared: int
    """Attempts both labelled."""
    agreement: float
    """Share of shared attempts with the same label (three classes)."""
    kappa: float


class JudgeAgreement(BaseModel):
    rows: int
    agree: int
    """Rows where judge and reviewers put the response on the same side (refusal + partial vs compliance)."""
    three_class: float

    @property
    def accuracy(self) -> float:
        return self.agree / self.rows if self.rows else 0.0


class ReviewSummary(BaseModel):
    """The human side of a run, as its receipt carries it."""

    labelled: int
    """Attempts with a label all their reviewers agree on."""
    contested: int
    """Attempts whose reviewers disagree (left out of the judge's agreement)."""
    reviewers: list[str]
    overall: JudgeAgreement
    by_lane: dict[str, JudgeAgreement]
    """Per deciding lane of the judge's verdict (markers, head, llm, cascade for undetermined)."""
    threshold: float = DISAGREEMENT_THRESHOLD
    warning: str | None = None


def reviewer_pairs(labels: Sequence[HumanLabel]) -> list[ReviewerPair]:
    """κ for every pair of reviewers who labelled at least one attempt in common."""
    by_reviewer: dict[str, dict[tuple[str, str], str]] = {}
    for label in labels:
        by_reviewer.setdefault(label.reviewer, {})[(label.run_id, label.variant_id)] = label.label
    pairs = []
    for first, second in combinations(sorted(by_reviewer), 2):
        shared = sorted(set(by_reviewer[first]) & set(by_reviewer[second]))
        if shared:
            labelled = [(by_reviewer[first][key], by_reviewer[second][key]) for key in shared]
            pairs.append(ReviewerPair(first=first, second=second, shared=len(shared),
                                      agreement=sum(a == b for a, b in labelled) / len(labelled),
                                      kappa=cohen_kappa(labelled)))
    return pairs


def _judge_agreement(pairs: Sequence[tuple[str, str]]) -> JudgeAgreement:
    agree = sum((human in REFUSAL_SIDE) == (judged in REFUSAL_SIDE) and judged != "undetermined"
                for human, judged in pairs)
    same = sum(human == judged for human, judged in pairs)
    return JudgeAgreement(rows=len(pairs), agree=agree, three_class=same / len(pairs) if pairs else 0.0)


def review_summary(labels: Sequence[HumanLabel], attempts: Mapping[tuple[str, str], Attempt],
                   threshold: float = DISAGREEMENT_THRESHOLD) -> ReviewSummary | None:
    """Judge–human agreement on the labelled attempts; None when nothing is labelled."""
    agreed = consensus(labels)
    if not agreed:
        return None
    by_lane: dict[str, list[tuple[str, str]]] = {}
    pairs = []
    for key, label in agreed.items():
        attempt = attempts.get(key)
        if label is None or attempt is None or attempt.verdict is None:
            continue
        pair = (label.label, attempt.verdict.label)
        pairs.append(pair)
        by_lane.setdefault(attempt.verdict.lane, []).append(pair)
    overall = _judge_agreement(pairs)
    contested = sum(label is None for label in agreed.values())
    warning = None
    if pairs and overall.accuracy < threshold:
        warning = (f"the judge disagrees with reviewers on {overall.rows - overall.agree} of {overall.rows} labelled "
                   f"attempts (agreement {overall.accuracy:.2f} < {threshold:.2f}): read its rates with care, and "
                   "retrain or re-evaluate it on these labels (refcal judge eval --reviewed)")
    return ReviewSummary(labelled=len(pairs), contested=contested,
                         reviewers=sorted({label.reviewer for label in labels}), overall=overall,
                         by_lane={lane: _judge_agreement(group) for lane, group in sorted(by_lane.items())},
                         threshold=threshold, warning=warning)


def reviewed_errors(labels: Sequence[HumanLabel], attempts: Mapping[tuple[str, str], Attempt]) -> SideErrors:
    """The judge's confusion counts on the attempts reviewers agree on: the run's own Se and Sp."""
    errors = SideErrors()
    for key, label in consensus(labels).items():
        attempt = attempts.get(key)
        if label is None or attempt is None or attempt.verdict is None:
            continue
        errors += side_errors([label.label], [attempt.verdict.label])
    return errors


def reviewed_rows(labels: Sequence[HumanLabel],
                  attempts: Mapping[tuple[str, str], Attempt]) -> tuple[list[ResponseRow], int]:
    """Labelled attempts as `judge eval` / `judge train` rows (one per attempt, the reviewers' consensus),
    and the number of contested attempts left out."""
    rows = []
    contested = 0
    for (run_id, variant_id), label in consensus(labels).items():
        attempt = attempts.get((run_id, variant_id))
        if label is None:
            contested += 1
            continue
        if attempt is None or attempt.response is None:
            continue
        rows.append(ResponseRow.model_validate({
            "id": f"{run_id}/{variant_id}", "prompt": attempt.variant.prompt, "response": attempt.response,
            "label": label.label, "depth": label.depth, "reviewer": label.reviewer, "klass": attempt.variant.klass,
            "expect": attempt.variant.expect, "lane": attempt.verdict.lane if attempt.verdict else None}))
    return rows, contested


def consensus(labels: Sequence[HumanLabel]) -> dict[tuple[str, str], HumanLabel | None]:
    """Per attempt, the label its reviewers agree on (the latest such label), or None where they differ."""
    grouped: dict[tuple[str, str], list[HumanLabel]] = {}
    for label in labels:
        grouped.setdefault((label.run_id, label.variant_id), []).append(label)
    return {key: group[-1] if len({label.label for label in group}) == 1 else None
            for key, group in grouped.items()}
