"""The persisted types: what a drill sends, what comes back, how it was judged, and the run that holds it.

One home for every record the store, receipts and reports read back, so the layers above can share them
without importing each other. Pydantic models and their literal vocabularies only: no I/O, no logic
beyond a property.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from refcal.clock import utc_now

GROUNDED_SCORER_VERSION = "grounded-2"
"""The grounded scorer's rule set (`refcal.judges.grounded`), stamped on every score it gives."""


Expect = Literal["refuse", "comply", "answer", "route"]


class Message(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    """Who speaks."""
    content: str
    """What is said."""


Label = Literal["refusal", "partial_refusal", "compliance", "undetermined"]


Depth = Literal["bare", "explains", "redirects", "workaround", "unknown"]


LABELS: tuple[Label, ...] = ("refusal", "partial_refusal", "compliance", "undetermined")
REFUSAL_SIDE: tuple[Label, ...] = ("refusal", "partial_refusal")
"""The labels on the refusal side of the line: a false refusal, a human's binary "refused", counts both."""
GAVE_WAY: tuple[Label, ...] = ("compliance", "partial_refusal")
"""The labels of a must-refuse turn that handed over some of what was asked (a slow drill breaks there)."""


class Verdict(BaseModel):
    """What a judge concluded about one response."""

    model_config = ConfigDict(frozen=True)

    label: Label
    """refusal / partial_refusal / compliance, or undetermined when the lane cannot tell."""
    score: float = Field(ge=0.0, le=1.0)
    """The lane's confidence in `label`."""
    lane: str
    """Which lane decided (`markers`, `head`, `llm`, `human`)."""
    depth: Depth | None = None
    """For refusals: bare, explains, redirects, workaround; unknown when the lane cannot tell."""
    reason: str = ""
    """A short account of why (the marker matched, the rule applied)."""


class GroundedScore(BaseModel):
    """The two columns for one response, with the cited ids and every failed rule."""

    model_config = ConfigDict(frozen=True)

    scored: bool
    """The behaviour contract holds (right citations, refusal present, route prefix)."""
    strict: bool
    """Scored, and no residue (aliases, id-only, outside ids, fabricated private state)."""
    cited: tuple[str, ...] = ()
    """Packet ids cited in `[id]` form, in order of first citation."""
    reasons: tuple[str, ...] = ()
    """Names of the failed rules (see the module docstring), scored rules first."""
    evidence: tuple[str, ...] = ()
    """One line per failed rule: what triggered it."""
    version: str = GROUNDED_SCORER_VERSION
    """The rule set that scored it."""


MAX_DEPTH = 4


MAX_PER_ITEM = 10_000


Hints = Literal["both", "off", "only"]
"""Which variants of a grounded item are sent: hint-free and hinted (`both`), hint-free only, hinted only."""


class MutationPlan(BaseModel):
    """How a fast drill mutates its items."""

    model_config = ConfigDict(frozen=True)

    mutators: tuple[str, ...]
    """Mutator names (from a --mutators spec)."""
    per_item: int = Field(ge=1, le=MAX_PER_ITEM)
    """Mutated variants per item (the item as written is sent too)."""
    depth: int = Field(default=1, ge=1, le=MAX_DEPTH)
    """Longest chain."""
    seed: int = 0


class GroundedSpec(BaseModel):
    """What the grounded scorer needs besides the response and the messages sent (which hold the packet's
    texts and the user's own turns, so they are not copied here)."""

    model_config = ConfigDict(frozen=True)

    packet_ids: tuple[str, ...]
    """The source ids of the packet sent, in packet order."""
    supporting_ids: tuple[str, ...] = ()
    """Sources marked `supports` (an answer must cite one of them); empty: any packet source."""
    hint_version: str | None = None
    """The evaluator line's version (`grounding_prompts.HINT_VERSION`) when sent hinted; None when hint-free."""


class Variant(BaseModel):
    """One concrete request derived from a seed item."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable across runs: the item id, plus a digest of the mutator chain and seed for mutated variants."""
    item_id: str
    """The seed item."""
    messages: tuple[Message, ...]
    """Exactly what is sent."""
    expect: Expect
    klass: str
    pair: str | None = None
    chain: tuple[str, ...] = ()
    """Mutators applied, in order; empty for the item as written."""
    seed: int | None = None
    """Seed the chain was applied with."""
    script: str | None = None
    """Slow drills: the script this turn belongs to."""
    turn: int | None = None
    """Slow drills: the 1-based turn (1 is the seed request as written)."""
    move: str | None = None
    """Slow drills: the pressure kind of this turn's move (`seed` for turn 1)."""
    grounded: GroundedSpec | None = None
    """Grounded items: how the response is scored (see `refcal.judges.grounded`); None for everything else."""

    @property
    def prompt(self) -> str:
        return self.messages[-1].content

    @property
    def hinted(self) -> bool:
        """Sent with the evaluator line."""
        return self.grounded is not None and self.grounded.hint_version is not None


class Completion(BaseModel):
    """A target's answer to one request."""

    text: str
    """The assistant's reply (possibly empty)."""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    """Wall time of the successful try."""
    retries: int = 0
    """Failed tries before this one."""


HumanVerdict = Literal["refusal", "partial_refusal", "compliance"]


HumanDepth = Literal["bare", "explains", "redirects", "workaround"]


HUMAN_VERDICTS: tuple[str, ...] = get_args(HumanVerdict)


HUMAN_DEPTHS: tuple[str, ...] = get_args(HumanDepth)


MAX_TRACE = 5_000


REVIEWER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class HumanLabel(BaseModel):
    """A reviewer's verdict on one attempt of one run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(min_length=1)
    variant_id: str = Field(min_length=1)
    reviewer: str = Field(pattern=REVIEWER.pattern)
    """Who labelled: letters, digits and . _ @ - (no spaces), at most 64 characters."""
    label: HumanVerdict
    depth: HumanDepth | None = None
    """For refusals and partial refusals: how the model declined."""
    trace: str = Field(default="", max_length=MAX_TRACE)
    """Why the model refused or failed here, clause by clause, in the reviewer's words."""
    labelled_at: str = Field(default_factory=utc_now)


PressureKind = Literal["politeness", "technical", "ethical", "authority", "ignorance", "urgency", "checkbox",
                       "prior_session", "repeat"]


PRESSURE_KINDS: tuple[str, ...] = get_args(PressureKind)


class Move(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: PressureKind
    text: str
    """What the user says; `{request}` is replaced by the seed request."""

    def render(self, request: str) -> str:
        return self.text.replace("{request}", request)


class Script(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    moves: tuple[Move, ...]
    note: str = ""

    @property
    def turns(self) -> int:
        return 1 + len(self.moves)


class AttackerPlan(BaseModel):
    """What a run's attacker is: recorded whole, so a resumed run asks the same attacker the same way."""

    model_config = ConfigDict(frozen=True)

    spec: str
    fingerprint: dict[str, object]
    version: str
    """Prompt name and digest, e.g. attacker-1+0123abcd4567."""
    turns: int
    """Turns in all, the seed included (3 to 8)."""
    kinds: tuple[str, ...] = PRESSURE_KINDS
    """Pressure kinds the attacker may apply, in escalation order."""


RunStatus = Literal["running", "complete", "interrupted"]


class RunRecord(BaseModel):
    """Everything needed to resume a run and write its receipt, without the original files."""

    run_id: str = Field(default_factory=lambda: datetime.now(UTC).strftime("%Y%m%d-%H%M%S-")
                        + uuid.uuid4().hex[:6])
    created_at: str = Field(default_factory=utc_now)
    status: RunStatus = "running"
    bench_name: str
    bench_digest: str
    bench_origin: str | None = None
    bench_lock: LockRef | None = None
    """Set when the bench is frozen: its digest matched this lock when the run was planned."""
    items: list[dict[str, Any]]
    """The bench's items as run, so resume needs no file and cannot drift from what was planned."""
    target_spec: str
    """The spec without credentials (an API key is never part of a spec)."""
    api_key_env: str | None = None
    """Name (never value) of the environment variable holding the key."""
    fingerprint: dict[str, Any]
    judge_name: str
    judge_version: str
    judge_target: str | None = None
    """Spec of the target that plays an llm-lane judge."""
    judge_head: str | None = None
    """Path of a head file given with --head (None: the shipped head, named by the judge version)."""
    limit: int | None = None
    mutation: MutationPlan | None = None
    """How items are mutated (fast drills); None sends each item as written."""
    replay: str | None = None
    """The one variant id a --replay run re-sends."""
    scripts: tuple[Script, ...] | None = None
    """Slow drills: the scripts each item is put through (kept whole, so resume needs no file)."""
    attacker: AttackerPlan | None = None
    """Slow drills in attacker mode: the target that writes the user's turns, its prompt version and turns."""
    to_end: bool = False
    """Slow drills: keep pressing after a break instead of stopping there."""
    number: int = 1
    """This drill's number among drills of the same bench on the same target fingerprint."""
    hints: Hints = "both"
    """Grounded items: sent hint-free and hinted (both), hint-free only (off) or hinted only (only)."""
    concurrency: int
    use_cache: bool = True
    out_dir: str


class LockRef(BaseModel):
    """The lock a frozen bench was checked against when its drill was planned."""

    path: str
    frozen_at: str
    lock_digest: str
    """sha256 of the lock file's bytes at that moment."""


class SideErrors(BaseModel):
    """A judge's binary confusion counts against human labels (refusal side = refusal + partial), with
    undetermined verdicts apart: what its sensitivity and specificity are estimated from."""

    tp: int = 0
    """Human refusal side, judge refusal side."""
    fn: int = 0
    tn: int = 0
    fp: int = 0
    undetermined_refusal: int = 0
    undetermined_compliance: int = 0

    @property
    def rows(self) -> int:
        return self.tp + self.fn + self.tn + self.fp + self.undetermined_refusal + self.undetermined_compliance

    @property
    def accuracy(self) -> float:
        """Binary; an undetermined verdict counts as wrong."""
        return (self.tp + self.tn) / self.rows if self.rows else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """Of the refusal side, an undetermined verdict on a human refusal counted as missed (unlike
        `sensitivity`, which corrected rates use: undetermined verdicts are in no rate's denominator)."""
        refusals = self.tp + self.fn + self.undetermined_refusal
        return self.tp / refusals if refusals else 0.0

    @property
    def f1(self) -> float:
        precision, recall = self.precision, self.recall
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    @property
    def sensitivity(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def specificity(self) -> float | None:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else None

    def __add__(self, other: SideErrors) -> SideErrors:
        return SideErrors(**{name: getattr(self, name) + getattr(other, name) for name in SideErrors.model_fields})


class MeasuredAgreement(BaseModel):
    """A judge version's agreement with one human-labelled file (refusal = full + partial)."""

    judge: str
    version: str
    labels: str
    """The label file and its sha256 (or, when shipped, what the figures were measured on)."""
    rows: int
    accuracy: float
    f1: float
    kappa: float | None
    measured_at: str = Field(default_factory=utc_now)
    errors: SideErrors | None = None
    """The confusion counts behind the figures (None in records written before they were kept)."""
    per_source: dict[str, SideErrors] = {}
    """Shipped figures: each labelled source, judged by a model trained on the others."""
    shipped: bool = False
    """Measured when the judge was built (leave-one-source-out), not on this user's labels."""


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
