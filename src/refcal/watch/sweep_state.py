"""What a log sweep keeps between passes and reports: its settings, its committed state (open windows, totals,
monitor states, what is still to hand over), the tables it keeps them in, and a pass's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from refcal.watch.alerts import Alert, AlertSample
from refcal.watch.control import Breach, ChartPoint
from refcal.watch.rotation import DEFAULT_SIBLINGS

SweepJudge = Literal["cascade", "markers"]
REFUSAL, LIKELY_FALSE = "refusal", "likely_false_refusal"
STATE_VERSION = 1
MAX_SAMPLE_CHARS = 4000
MAX_RAW_CHARS = 2000
OTHER = "other"

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_state (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_quarantine (
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    line INTEGER NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    quarantined_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_review_pool (
    name TEXT NOT NULL,
    stratum TEXT NOT NULL,
    slot INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (name, stratum, slot)
);
"""


class SweepSettings(BaseModel):
    """What one sweep watches and how."""

    logs: list[Path]
    store: Path
    window: int = Field(default=500, ge=1)
    """Exchanges per window, per segment."""
    judge: SweepJudge = "cascade"
    fields: str | None = None
    """A --map text (FIELD=dotted.path,…); None reads the OpenAI chat shape."""
    baseline_windows: int = Field(default=10, ge=1)
    keep_text: bool = False
    """Keep raw text in alerts, the review pool and quarantine (redacted otherwise)."""
    name: str = "default"
    """Sweeps of different logs into one store keep apart state under different names."""
    review_every: int = Field(default=3, ge=1)
    review_size: int = Field(default=30, ge=1)
    samples: int = Field(default=5, ge=0)
    """Exchanges kept per window and metric to show in an alert."""
    max_segments: int = Field(default=50, ge=1)
    """Distinct routes (and classes) watched; later ones count as `route:other` (`other`)."""
    rotated: list[str] = Field(default_factory=lambda: list(DEFAULT_SIBLINGS))
    """Glob patterns naming each log's rotated copies, relative to its folder, with {name}, {stem} and {suffix}
    for the log's file name, its name less the suffix, and the suffix (refcal.watch.rotation)."""


@dataclass(slots=True)
class OpenWindow:
    """The window of one segment being filled."""

    index: int = 0
    start: str = ""
    end: str = ""
    seen: int = 0
    """Exchanges counted in it (judged or undetermined)."""
    n: int = 0
    """Judged ones: the denominator of both rates."""
    undetermined: int = 0
    refusals: int = 0
    likely_false: int = 0
    samples: dict[str, list[AlertSample]] = field(default_factory=dict)


@dataclass(slots=True)
class Totals:
    lines: int = 0
    blank: int = 0
    malformed: int = 0
    errors: int = 0
    """Exchanges whose upstream failed (no response)."""
    exchanges: int = 0
    undetermined: int = 0
    refusals: int = 0
    likely_false: int = 0
    warranted: int = 0
    unclear: int = 0
    windows: int = 0
    breaches: int = 0
    review_runs: int = 0
    gaps: int = 0
    """Parts of the logs gone before they were read (each recorded by the tail and alerted on)."""


@dataclass
class SweepState:
    """Everything a restart needs, committed with the cursors of the lines it reflects."""

    version: int = STATE_VERSION
    passes: int = 0
    totals: Totals = field(default_factory=Totals)
    windows: dict[str, OpenWindow] = field(default_factory=dict)
    monitors: dict[str, dict[str, Any]] = field(default_factory=dict)
    """'metric|segment' → Monitor.state()."""
    segments: dict[str, list[str]] = field(default_factory=dict)
    """'route' / 'class' → names watched so far (at most max_segments each)."""
    review_seen: dict[str, int] = field(default_factory=dict)
    """Stratum → refusals offered to its reservoir since the last review run."""
    pending_points: list[ChartPoint] = field(default_factory=list)
    pending_alerts: list[Alert] = field(default_factory=list)


STATE_JSON = TypeAdapter(SweepState)
"""Reads and writes a SweepState as JSON (the watch_state row)."""


class PassReport(BaseModel):
    """What one pass did."""

    number: int
    lines: int = 0
    exchanges: int = 0
    malformed: int = 0
    refusals: int = 0
    likely_false: int = 0
    windows: int = 0
    breaches: list[Breach] = []
    delivered: int = 0
    review_run: str | None = None
    notes: list[str] = []
    gaps: int = 0
    """Gaps found in this pass (their notes are among `notes`; each raises an alert)."""
    stopped: bool = False
    """Stopped between batches on request; the rest is read next time."""
