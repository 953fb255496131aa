"""`recal.toml`: one file that says what the recalibration loop does, read strictly.

    base = "llamacpp:smollm2"        # the model to recalibrate (hf:PATH, llamacpp:smollm2, llamacpp:PATH.gguf)
    method = "sft"                   # sft (LoRA, optionally contrastive first) or direction (refusal-direction edit)
    benches = ["curveball"]          # frozen benches drilled before and after; the gates read their receipts
    gates = "gates.toml"             # the promotion gates (refcal promote)
    # out = "recal-out"              # default: a folder named after this file, beside it
    # force = false                  # train a base `refcal recal check` finds not ready
    # allow_contamination = false    # train on a corpus that meets a frozen bench (recorded)
    # locks = "frozen"               # folder of bench locks;  store = ".refcal/refcal.db"
    # threads = 1                    # torch CPU threads for training, editing and hf drills

    [readiness]                      # lookalikes = "starter", limit, max_tokens
    [drill]                          # max_tokens = 96, concurrency = 4, limit
    [corpus]                         # recipe = "failures" | "tbr", source = "starter", teacher, general, ...
    [sft]                            # any `refcal recal sft` setting ([sft.contrastive] as a table)
    [direction]                      # any `refcal recal direction` setting, and max_false_refusal

Relative paths are read from the config file's folder. An unknown key or a bad value names the file and the
key, before anything runs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refcal.errors import InputFileError


class ReadinessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lookalikes: str = "starter"
    limit: int | None = Field(default=None, ge=1)
    """The first N routine instructions and N look-alikes only (quick loops)."""
    max_tokens: int = Field(default=96, ge=1)


class DrillSettings(BaseModel):
    """Every drill of the loop (baseline and candidate) uses these, so their receipts compare."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(default=96, ge=1)
    concurrency: int = Field(default=4, ge=1)
    limit: int | None = Field(default=None, ge=1)


class CorpusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: Literal["failures", "tbr"] = "failures"
    source: str = "starter"
    """The training bench: drilled at baseline (its failures feed `failures`), its items feed `tbr` and `pairs`,
    and direction editing extracts and scores on it. It must not be one of the gated benches."""
    teacher: str | None = None
    """Target spec writing responses (failures) or external reflections (tbr); None: templates / internal."""
    general: list[str] = ["routine"]
    """Instructions whose self-distilled answers are mixed in: bench names (their benign items) or JSONL files."""
    ratio: int = Field(default=9, ge=0)
    """tbr: general rows per safety row."""
    gamma: float = Field(default=0.0, ge=0.0, le=1.0)
    """tbr: share of general rows that carry a reflection."""
    contrastive: bool = False
    """sft: build pairs from the source bench and run the contrastive stage first."""


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str
    method: Literal["sft", "direction"] = "sft"
    benches: list[str] = Field(min_length=1)
    gates: Path
    out: Path | None = None
    force: bool = False
    allow_contamination: bool = False
    locks: Path = Path("frozen")
    store: Path = Path(".refcal") / "refcal.db"
    threads: int | None = Field(default=None, ge=1)
    readiness: ReadinessSettings = ReadinessSettings()
    drill: DrillSettings = DrillSettings()
    corpus: CorpusSettings = CorpusSettings()
    sft: dict[str, Any] = {}
    """Checked against SFTSettings when the config is read."""
    direction: dict[str, Any] = {}
    """Checked against SearchSettings (+ max_false_refusal) when the config is read."""
    path: Path = Path("recal.toml")
    """The file this was read from (set by `read_config`)."""


def read_config(path: Path) -> LoopConfig:
    """The loop's config, every relative path resolved against the file's folder; InputFileError naming the file
    and key of the first problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputFileError(f"cannot read the config: {error.strerror}", path=str(path)) from None
    except tomllib.TOMLDecodeError as error:
        raise InputFileError(f"not TOML: {error}", path=str(path)) from None
    if "path" in data:
        raise InputFileError("unknown key 'path'", path=str(path), field="path")
    try:
        config = LoopConfig.model_validate({**data, "path": path})
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = f"unknown key '{key}'" if first["type"] == "extra_forbidden" else f"'{key}': {first['msg']}"
        raise InputFileError(message, path=str(path), field=key) from None
    if config.corpus.source in config.benches:
        raise InputFileError(f"the training bench '{config.corpus.source}' is also gated: gate on benches training "
                             "never meets", path=str(path), field="corpus.source")
    _check_method_settings(config)
    folder = path.parent

    def local(spec: str) -> str:  # a bench or instruction file, rather than a built-in name
        return str(folder / spec) if spec.endswith((".jsonl", ".csv")) else spec

    return config.model_copy(update={
        "gates": folder / config.gates, "locks": folder / config.locks, "store": folder / config.store,
        "out": folder / (config.out or Path(path.stem)), "benches": [local(spec) for spec in config.benches],
        "corpus": config.corpus.model_copy(update={"source": local(config.corpus.source),
                                                   "general": [local(spec) for spec in config.corpus.general]}),
    })


def _check_method_settings(config: LoopConfig) -> None:
    """The [sft] and [direction] tables against the settings they become (unknown keys named)."""
    from refcal.recal.sft import load_settings

    where = str(config.path)
    try:
        load_settings(None, config.sft)
    except InputFileError as error:
        raise InputFileError(f"[sft] {error.reason}", path=where, field=f"sft.{error.field or ''}".rstrip(".")) \
            from None
    try:
        direction_settings(config)
    except ValidationError as error:
        first = error.errors()[0]
        key = "direction." + ".".join(str(part) for part in first["loc"])
        message = f"unknown key '{key}'" if first["type"] == "extra_forbidden" else f"'{key}': {first['msg']}"
        raise InputFileError(message, path=where, field=key) from None


def direction_settings(config: LoopConfig) -> tuple[Any, Any]:
    """(SearchSettings, ChoiceRule) of the [direction] table; ValidationError on a bad or unknown key."""
    from refcal.recal.direction.settings import ChoiceRule, SearchSettings

    table = dict(config.direction)
    rule = ChoiceRule(max_false_refusal=table.pop("max_false_refusal", 0.10), max_kl=table.get("max_kl", 0.5))
    settings = SearchSettings.model_validate({"threads": config.threads, **table})
    return settings, rule
