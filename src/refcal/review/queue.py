"""A reviewer's queue over runs in the store: which attempt to show next, and committing labels.

The queue is drawn once when review starts (review.sampling); what to show next is read from the store
each time, so a label submitted is committed before the next attempt is shown, and a reload or a restart
picks up where the reviewer stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from refcal.records import Attempt, HumanLabel
from refcal.review.labels import parse_label
from refcal.review.sampling import (
    REVIEW_SIZE,
    ReviewPick,
    candidates,
    has_review_sample,
    review_queue,
    stratified_sample,
)
from refcal.store.runs import Store

DEFAULT_SIZE = 40


def draw_queue(store: Store, run_ids: list[str], reviewer: str, size: int = DEFAULT_SIZE,
               second_opinion: bool = False, seed: str = "") -> list[ReviewPick]:
    """Picks for one reviewer. By default attempts anyone labelled are skipped; with `second_opinion`
    the attempts others labelled and this reviewer did not are offered instead, in the order they were
    labelled, so two people's labels on the same attempts give a κ."""
    labels = store.labels(run_ids)
    mine = {(label.run_id, label.variant_id) for label in labels if label.reviewer == reviewer}
    if second_opinion:
        others = dict.fromkeys((label.run_id, label.variant_id) for label in labels if label.reviewer != reviewer)
        return [ReviewPick(run_id=run_id, variant_id=variant_id, reasons=("second_opinion",))
                for run_id, variant_id in others if (run_id, variant_id) not in mine][:size]
    found: dict[str, dict[str, list[str]]] = {}
    for run_id in run_ids:
        run = store.get_run(run_id)
        attempts = list(store.attempts(run_id))
        sample = ([attempt.variant.id for attempt in stratified_sample(attempts, run_id, REVIEW_SIZE)]
                  if has_review_sample(run) else [])
        found[run_id] = candidates(run_id, attempts, sample, seed)
    return review_queue(found, {(label.run_id, label.variant_id) for label in labels}, size)


@dataclass
class ReviewSession:
    """One reviewer working through a queue."""

    store: Store
    reviewer: str
    picks: list[ReviewPick]
    skipped: set[tuple[str, str]] = field(default_factory=set)

    def labelled(self) -> dict[tuple[str, str], HumanLabel]:
        return {(label.run_id, label.variant_id): label for label in self.store.labels(reviewer=self.reviewer)}

    def next_pick(self) -> ReviewPick | None:
        """The first pick this reviewer has neither labelled nor skipped."""
        done = self.labelled()
        return next((pick for pick in self.picks if (pick.run_id, pick.variant_id) not in done
                     and (pick.run_id, pick.variant_id) not in self.skipped), None)

    def show(self, pick: ReviewPick) -> tuple[Attempt, HumanLabel | None]:
        """The attempt behind a pick, and this reviewer's label on it if any."""
        return (self.store.attempt(pick.run_id, pick.variant_id),
                self.labelled().get((pick.run_id, pick.variant_id)))

    def submit(self, fields: dict[str, Any]) -> HumanLabel:
        """Check a submitted form (InputFileError names the bad field), then commit it."""
        label = parse_label({**fields, "reviewer": self.reviewer}, where="review form")
        if not any(pick.run_id == label.run_id and pick.variant_id == label.variant_id for pick in self.picks):
            raise ValueError(f"{label.run_id}/{label.variant_id} is not in this review queue")
        self.store.add_label(label)
        self.skipped.discard((label.run_id, label.variant_id))
        return label

    def skip(self, run_id: str, variant_id: str) -> None:
        self.skipped.add((run_id, variant_id))

    def progress(self) -> tuple[int, int]:
        """(labelled by this reviewer, picks in the queue)."""
        done = self.labelled()
        return sum((pick.run_id, pick.variant_id) in done for pick in self.picks), len(self.picks)
