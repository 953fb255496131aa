"""How a direction search runs (`SearchSettings`, and the `Progress` it reports) and which front trial it applies
(`ChoiceRule`). Pure pydantic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["ablate", "steer", "conditional"]
Stage = Literal["load", "directions", "baseline", "trial", "save"]
Progress = Callable[[Stage, int, int, str], None]
"""Told (stage, done, total, note) as the run advances; a resumed search starts its trials above 0."""


class SearchSettings(BaseModel):
    """How the search runs. `trials`, `batch_size` and `threads` may change between starts of one search; the
    rest define the study, and a resume with other values is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "conditional"
    """`ablate` lowers refusals (over-refusal); `steer` raises them everywhere; `conditional` raises them only
    where the condition direction recognises a harmful request."""
    trials: int = Field(default=40, ge=0)
    """Finished trials the study should hold; a resumed study runs only the missing ones (0: choose again)."""
    seed: int = 0
    """Seeds the bench split and the sampler."""
    extraction_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Share of each class's pairs that feed the directions; the rest score the trials."""
    harmless_prompts: int = Field(default=24, ge=2, le=24)
    """Built-in harmless instructions used for the refusal direction, and as many other ones for KL."""
    max_new_tokens: int = Field(default=48, ge=1, le=512)
    """Reply length judged per trial: refusals sit in the opening."""
    startup_trials: int = Field(default=10, ge=1)
    """Random trials before TPE models the objectives."""
    max_kl: float = Field(default=0.5, gt=0.0)
    """The KL constraint: trials above it are infeasible."""
    batch_size: int = Field(default=16, ge=1)
    threads: int | None = Field(default=None, ge=1)
    """torch CPU threads (None: torch's default)."""

    def study_key(self) -> dict[str, Any]:
        return self.model_dump(include={"mode", "seed", "extraction_share", "harmless_prompts", "max_new_tokens",
                                        "startup_trials"})


class ChoiceRule(BaseModel):
    """Which front trial to apply: the highest refusal rate among those with false refusal ≤ `max_false_refusal`
    and KL ≤ `max_kl` (point estimates; the intervals are in trials.json); ties go to lower false refusal, then
    lower KL, then the earlier trial. No trial qualifying means nothing is saved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_false_refusal: float = Field(default=0.10, ge=0.0, le=1.0)
    max_kl: float = Field(default=0.5, gt=0.0)
