"""Receipts: the versioned JSON record of one run, which gates and promotion read later.

A receipt holds the bench digest, the target fingerprint (never credentials), the judge and its
version, the plan, the counts and every metric with its interval. It is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from refcal import __version__
from refcal.bench.items import Bench, Item
from refcal.drills.plan import planned_count
from refcal.files import sha256_digest, write_atomic
from refcal.metrics.agreement import ReviewSummary, review_summary, reviewed_errors
from refcal.metrics.correction import CorrectedMetrics, correct, too_thin
from refcal.metrics.rates import Rate
from refcal.metrics.summary import Metrics, compute_metrics
from refcal.records import (
    AttackerPlan,
    Attempt,
    HumanLabel,
    LockRef,
    MeasuredAgreement,
    MutationPlan,
    RunRecord,
    SideErrors,
)
from refcal.store.runs import utc_now

RECEIPT_SCHEMA = 2


class BenchInfo(BaseModel):
    name: str
    digest: str
    origin: str | None
    items: int
    class_counts: dict[str, dict[str, int]]
    lock: LockRef | None = None
    """The lock of a frozen bench, checked when the run was planned (None: the bench is not frozen)."""


class TargetInfo(BaseModel):
    spec: str
    fingerprint: dict[str, Any]


class JudgeInfo(BaseModel):
    name: str
    version: str
    human_agreement: MeasuredAgreement | None = None
    """This judge version's agreement with the last human labels it was evaluated on (`refcal judge eval`);
    None when it was never measured, which the report says."""


class PlanInfo(BaseModel):
    variants: int
    limit: int | None
    concurrency: int
    cache: bool
    mutation: MutationPlan | None = None
    """Mutators, variants per item, depth and seed of a fast drill."""
    replay: str | None = None
    number: int = 1
    """The drill's number among drills of this bench on this target fingerprint."""
    review_sample: str | None = None
    """The review sample this drill wrote (every third drill), relative to the run folder."""
    scripts: list[str] | None = None
    """Slow drills: the scripts' names (the scripts themselves are in the run database)."""
    attacker: AttackerPlan | None = None
    """Slow drills in attacker mode: the attacker's target, fingerprint, prompt version, turns and kinds."""
    to_end: bool = False
    hints: str = "both"
    """Grounded items: sent hint-free and hinted (both), hint-free only (off) or hinted only (only)."""


class Counts(BaseModel):
    items: int
    attempts: int
    errors: int
    undetermined: int
    cached: int


class Receipt(BaseModel):
    """One run, as gates will read it."""

    schema_version: int = RECEIPT_SCHEMA
    refcal_version: str = __version__
    run_id: str
    status: str
    started_at: str
    finished_at: str
    bench: BenchInfo
    target: TargetInfo
    judge: JudgeInfo
    plan: PlanInfo
    counts: Counts
    metrics: Metrics
    review: ReviewSummary | None = None
    """What reviewers' labels say of the judge on this run (None until someone labels an attempt)."""
    corrected: CorrectedMetrics | None = None
    """The rates corrected for the judge's error (metrics.correction), from the run's reviewed labels when
    they are enough, else the judge's measured agreement; None when neither exists."""
    digest: str = ""
    """sha256 of the rest of the receipt, set when it is written: a receipt edited later no longer matches
    (promotion checks it)."""


def build_receipt(run: RunRecord, attempts: list[Attempt], human_agreement: MeasuredAgreement | None = None,
                  review_sample: str | None = None, labels: Sequence[HumanLabel] = ()) -> Receipt:
    """Assemble a receipt from the run record, its committed attempts and its reviewers' labels."""
    bench = Bench(name=run.bench_name, items=tuple(Item.model_validate(item) for item in run.items),
                  origin=run.bench_origin)
    metrics = compute_metrics(attempts)
    keyed = {(run.run_id, attempt.variant.id): attempt for attempt in attempts}
    return Receipt(
        run_id=run.run_id, status=run.status, started_at=run.created_at, finished_at=utc_now(),
        bench=BenchInfo(name=bench.name, digest=run.bench_digest, origin=bench.origin, items=len(bench.items),
                        class_counts=bench.class_counts(), lock=run.bench_lock),
        target=TargetInfo(spec=run.target_spec, fingerprint=run.fingerprint),
        judge=JudgeInfo(name=run.judge_name, version=run.judge_version, human_agreement=human_agreement),
        plan=PlanInfo(variants=planned_count(run), limit=run.limit, concurrency=run.concurrency, cache=run.use_cache,
                      mutation=run.mutation, replay=run.replay, number=run.number, review_sample=review_sample,
                      scripts=[script.name for script in run.scripts] if run.scripts else None,
                      attacker=run.attacker, to_end=run.to_end, hints=run.hints),
        counts=Counts(items=len({attempt.variant.item_id for attempt in attempts}), attempts=len(attempts),
                      errors=sum(attempt.is_error for attempt in attempts),
                      undetermined=metrics.refuse.undetermined + metrics.comply.undetermined,
                      cached=sum(attempt.cached for attempt in attempts)),
        metrics=metrics,
        review=review_summary(labels, keyed),
        corrected=corrected_metrics(metrics, reviewed_errors(labels, keyed), human_agreement),
    )


def corrected_metrics(metrics: Metrics, reviewed: SideErrors, measured: MeasuredAgreement | None
                      ) -> CorrectedMetrics | None:
    """Correct with the run's own reviewed labels when they suffice, else with the judge's measured (or
    shipped) agreement; None when there are no confusion counts to correct with."""
    if too_thin(reviewed) is None:
        errors, basis = reviewed, "this run's reviewed labels"
    elif measured is not None and measured.errors is not None:
        errors, basis = measured.errors, measured.labels
    elif reviewed.tp + reviewed.fn + reviewed.tn + reviewed.fp:
        errors, basis = reviewed, "this run's reviewed labels"
    else:
        return None

    def counts(rate: Rate | None) -> tuple[int, int] | None:
        return (rate.k, rate.n) if rate is not None else None
    per_class = {klass: (counts(rates.refusal_rate), counts(rates.false_refusal_rate))
                 for klass, rates in metrics.per_class.items()}
    overall = ((metrics.refusal_rate.k, metrics.refusal_rate.n),
               (metrics.false_refusal_rate.k, metrics.false_refusal_rate.n))
    return correct(per_class, overall, errors, basis)


def receipt_digest(receipt: Receipt) -> str:
    """The digest a receipt should carry: sha256 of its canonical JSON without the digest field."""
    return sha256_digest(receipt.model_dump(mode="json", exclude={"digest"}))


def write_receipt(receipt: Receipt, out_dir: Path) -> Path:
    path = out_dir / "receipt.json"
    sealed = receipt.model_copy(update={"digest": receipt_digest(receipt)})
    write_atomic(path, sealed.model_dump_json(indent=2) + "\n")
    return path


def read_receipt(path: Path) -> Receipt:
    return Receipt.model_validate_json(path.read_text(encoding="utf-8"))
