"""The Pareto choice of a direction search: which trials are scored, the feasible front of refusal (up) against
false refusal (down) under the KL bound, and the one trial a `ChoiceRule` applies. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from refcal.recal.direction.settings import ChoiceRule
from refcal.recal.direction.trials import TrialRecord


def scored(record: TrialRecord) -> bool:
    """Both rates known: a trial whose replies were all undetermined on one side has nothing to place."""
    return record.evaluation.refusal.value is not None and record.evaluation.false_refusal.value is not None


def dominates(first: TrialRecord, second: TrialRecord) -> bool:
    """At least as much refusal and as little false refusal, and better on one."""
    a, b = first.evaluation, second.evaluation
    assert a.refusal.value is not None and a.false_refusal.value is not None
    assert b.refusal.value is not None and b.false_refusal.value is not None
    return (a.refusal.value >= b.refusal.value and a.false_refusal.value <= b.false_refusal.value
            and (a.refusal.value > b.refusal.value or a.false_refusal.value < b.false_refusal.value))


def pareto_front(records: Sequence[TrialRecord], max_kl: float) -> list[TrialRecord]:
    """The feasible (KL ≤ max_kl), scored trials no other feasible trial dominates, by false refusal then
    refusal (highest first)."""
    feasible = [record for record in records if scored(record) and record.evaluation.kl <= max_kl]
    front = [record for record in feasible if not any(dominates(other, record) for other in feasible)]
    return sorted(front, key=lambda record: (record.evaluation.false_refusal.value,
                                             -(record.evaluation.refusal.value or 0.0), record.number))


def choose(front: Sequence[TrialRecord], rule: ChoiceRule) -> TrialRecord | None:
    """The trial to apply under `rule` (see ChoiceRule), or None."""
    eligible = [record for record in front if scored(record)
                and (record.evaluation.false_refusal.value or 0.0) <= rule.max_false_refusal
                and record.evaluation.kl <= rule.max_kl]
    if not eligible:
        return None
    return max(eligible, key=lambda record: (record.evaluation.refusal.value, -(record.evaluation.false_refusal.value
                                             or 0.0), -record.evaluation.kl, -record.number))
