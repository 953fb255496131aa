"""The direction edits as data: a per-layer `Kernel`, `Ablation`, `Steering` with its optional `Condition`, and the
forms a saved edit takes. Pure pydantic; `apply` turns them into weight changes and steering plans."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Kernel(BaseModel):
    """A weight per layer: `max_weight` at layer position `peak`, falling linearly to `min_weight` at `width`
    layers away, and zero beyond (heretic's abliteration kernel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_weight: float = Field(ge=0.0)
    peak: float
    """Layer position of the peak (fractional positions are allowed)."""
    min_weight: float = Field(ge=0.0)
    width: float = Field(ge=1.0)
    """Distance in layers at which the weight has fallen to `min_weight`."""

    def weight(self, layer: int) -> float:
        distance = abs(layer - self.peak)
        if distance > self.width:
            return 0.0
        return self.max_weight + (distance / self.width) * (self.min_weight - self.max_weight)


class Ablation(BaseModel):
    """Project the refusal direction out of the layers' `o_proj` and `down_proj` outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["ablate"] = "ablate"
    direction_index: float | None
    """One direction for every layer, interpolated at this layer position; None: each layer its own."""
    attention: Kernel
    mlp: Kernel


class Condition(BaseModel):
    """Steer a prompt only when its residual at `layer` points far enough along the condition direction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    layer: int = Field(ge=0)
    threshold: float = Field(ge=-1.0, le=1.0)
    """Cosine between (residual − centre) and the condition direction at which steering starts."""


class Steering(BaseModel):
    """Add the refusal direction to MLP outputs, always or under a condition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["steer"] = "steer"
    direction_index: float | None
    """As in Ablation."""
    kernel: Kernel
    """Strength per layer, in units of that layer's harmful-minus-harmless distance."""
    condition: Condition | None = None


Edit = Annotated[Ablation | Steering, Field(discriminator="kind")]

MODEL_DIR = "model"
"""The folder under a search's OUT that the chosen edit is saved in (load it as `hf:OUT/model`)."""
SavedAs = Literal["weights", "bias", "steering-file"]
"""`weights`: edited projections; `bias`: steering as down_proj biases (`mlp_bias`); `steering-file`:
`steering.json` + `steering.safetensors` that the loader must attach."""
