"""Attempt: one variant sent to one target, with what came back or the error that came instead."""

from __future__ import annotations

from pydantic import BaseModel

from refcal.drills.plan import Variant
from refcal.judges.base import Verdict
from refcal.judges.grounded import GroundedScore


class Attempt(BaseModel):
    """The record of one send; `error` set means no response, and then no verdict either."""

    variant: Variant
    """What was sent, with its lineage."""
    response: str | None = None
    """The reply text; None when the target failed."""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    retries: int = 0
    """Failed tries before the final outcome."""
    cached: bool = False
    """Served from the cache (an identical earlier request to an identical target)."""
    error: str | None = None
    """Why the target gave no response after its retries."""
    verdict: Verdict | None = None
    """The judge's verdict; None for errors."""
    grounded: GroundedScore | None = None
    """Grounded variants: the contract's scored and strict columns (the judge's verdict is kept beside);
    None for errors and for variants without a packet."""
    finished_at: str = ""
    """ISO 8601 UTC."""

    @property
    def is_error(self) -> bool:
        return self.error is not None
