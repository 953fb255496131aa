"""The settings of a LoRA SFT run (`SFTSettings`), read from a TOML file with command-line overrides on top."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refcal.errors import InputFileError
from refcal.recal.contrastive import ContrastiveSettings


class SFTSettings(BaseModel):
    """Every hyperparameter of a LoRA SFT run. Defaults suit SmolLM2-135M on 2 CPU cores (about 2–4 s per step
    of 4 short rows); a TOML file may set any of them, with `[contrastive]` as a table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lora_rank: int = Field(16, ge=1)
    """LoRA rank r: the adapter's width."""
    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator; the update is scaled by alpha / r (2 with the defaults)."""
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the adapter's input."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Linear modules that get an adapter, by name (`q_proj`, `v_proj`, ...), or `all-linear`: every linear layer
    but the output head, whatever the architecture calls them."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak AdamW learning rate of the SFT stage."""
    scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    """Learning-rate schedule after warm-up."""
    warmup: float = Field(0.03, ge=0, lt=1)
    """Share of the steps spent warming up linearly from 0."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay; 0 because LoRA's small rank already limits how far the weights move."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the corpus; ignored when `max_steps` is set."""
    max_steps: int | None = Field(None, ge=1)
    """Optimiser steps to train for, overriding `epochs`."""
    batch_size: int = Field(4, ge=1)
    """Rows per forward pass."""
    gradient_accumulation: int = Field(1, ge=1)
    """Forward passes per optimiser step (effective batch = batch_size × gradient_accumulation)."""
    max_length: int = Field(512, ge=16)
    """Tokens per row after templating; longer rows are cut at the end, and rows whose prompt alone fills it are
    left out (both counted in the receipt)."""
    seed: int = 0
    """Seeds LoRA initialisation, data order, dropout and the contrastive stage's sampling."""
    save_steps: int = Field(50, ge=1)
    """A checkpoint every this many steps (and at the end); the newest two are kept."""
    logging_steps: int = Field(1, ge=1)
    """A loss-curve point every this many steps."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` takes CUDA when torch sees a GPU."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """`auto` is bfloat16 on a GPU that supports it and float32 otherwise."""
    cpu_threads: int | None = Field(None, ge=1)
    """torch threads on CPU; None keeps torch's default (one per core). Use 1 when other jobs share the cores:
    OpenMP threads waiting on each other made a step ten times slower on a busy 2-core machine."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""
    contrastive: ContrastiveSettings = ContrastiveSettings()
    """The contrastive stage's settings (used only with a pairs corpus)."""


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> SFTSettings:
    """Settings from a TOML file (if any), then `overrides` (None values skipped) on top of it.

    Raises:
        InputFileError: The file is not TOML, or a key is unknown or has a bad value (named as its field).
    """
    data: dict[str, Any] = {}
    where = str(path) if path is not None else None
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputFileError("no such settings file", path=where) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise InputFileError(f"not TOML: {error}", path=where) from None
    data.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return SFTSettings.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"] if "[" not in str(part))  # not union branch names
        if first["type"] == "extra_forbidden":
            known = _known_keys(first["loc"][:-1])
            raise InputFileError(f"unknown setting (known: {', '.join(known)})", path=where, field=field) from None
        raise InputFileError(first["msg"], path=where, field=field) from None


def _known_keys(parent: Sequence[Any]) -> list[str]:
    model = ContrastiveSettings if list(parent) == ["contrastive"] else SFTSettings
    return sorted(model.model_fields)
