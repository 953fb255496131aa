"""Steering at run time: the forward hooks that add refusal-direction vectors to a loaded model's MLP outputs,
optionally gated by a condition reading, and the `steering.json` + `steering.safetensors` files that carry them.

It lives with the targets because the `hf:` target attaches a saved steering folder when it loads a model;
`refcal.recal.direction` builds the plans and saves them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refcal.errors import InputFileError, RefcalError
from refcal.files import write_atomic

STEERING_FILE = "steering.json"


STEERING_TENSORS = "steering.safetensors"


STEERING_FORMAT = "refcal-steering-1"


class DirectionError(RefcalError):
    """Direction editing cannot run: a base that does not load or has no editable layers, a bench too small to
    split, an output folder that belongs to another search."""


def decoder_layers(model: Any, spec: str = "the model") -> Sequence[Any]:
    """The decoder layers, each checked to have `self_attn.o_proj` and `mlp.down_proj` as plain linear layers."""
    inner = getattr(model, "model", None)
    layers = getattr(getattr(inner, "language_model", inner), "layers", None)
    if layers is None:
        raise DirectionError(f"{spec}: no decoder layers found at model.model.layers")
    for index, layer in enumerate(layers):
        for path in ("self_attn.o_proj", "mlp.down_proj"):
            try:
                module = layer.get_submodule(path)
            except AttributeError:
                module = None
            if not isinstance(module, torch.nn.Linear):
                raise DirectionError(f"{spec}: layer {index} has no linear {path}, which direction editing changes")
    return layers


def hidden_states(output: Any) -> torch.Tensor:
    """A decoder layer's hidden states (transformers 5 returns the tensor, older versions a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def cosines(reading: torch.Tensor, centre: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    offset = reading.float() - centre
    return (offset @ direction) / offset.norm(dim=-1).clamp_min(1e-6)


@dataclass(frozen=True)
class ConditionReading:
    """What a gate needs at run time: where to read, from where, along what, and from which cosine on."""

    layer: int
    direction: torch.Tensor
    centre: torch.Tensor
    threshold: float


@dataclass(frozen=True)
class SteeringPlan:
    """Steering as tensors: a vector per steered layer, and the condition reading when it is conditional."""

    vectors: dict[int, torch.Tensor]
    condition: ConditionReading | None = None


class SteeringHooks:
    """Forward hooks that carry out a SteeringPlan on a model; use as a context manager, or `attach` and keep.

    The gate of each batch row is decided on a pass of more than one token (a prompt's prefill) from its last
    token, and kept for the one-token passes that follow (generation with a cache). A one-token pass whose batch
    size differs from the kept gate decides a new gate from that token. `scores` and `gate` hold the last
    decision, for inspection.
    """

    def __init__(self, model: Any, plan: SteeringPlan) -> None:
        layers = decoder_layers(model)
        bad = [layer for layer in plan.vectors if not 0 <= layer < len(layers)]
        if plan.condition is not None and not 0 <= plan.condition.layer < len(layers):
            bad.append(plan.condition.layer)
        if bad:
            raise DirectionError(f"steering names layers {bad}, but the model has {len(layers)}")
        self.model, self.plan, self.layers = model, plan, layers
        self.scores: torch.Tensor | None = None
        self.gate: torch.Tensor | None = None
        self._handles: list[Any] = []

    def attach(self) -> SteeringHooks:
        if self._handles:
            return self
        parameter = next(self.model.parameters())
        vectors = {layer: vector.to(parameter.device, parameter.dtype) for layer, vector in self.plan.vectors.items()}
        if self.plan.condition is not None:
            reading = self.plan.condition
            direction = reading.direction.to(parameter.device, torch.float32)
            centre = reading.centre.to(parameter.device, torch.float32)
            self._handles.append(self.layers[reading.layer].register_forward_hook(
                lambda module, inputs, output: self._read(hidden_states(output), direction, centre, reading.threshold)))
        for layer, vector in vectors.items():
            self._handles.append(self.layers[layer].mlp.register_forward_hook(
                lambda module, inputs, output, vector=vector: self._steer(output, vector)))
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.scores = self.gate = None

    def __enter__(self) -> SteeringHooks:
        return self.attach()

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def _read(self, hidden: torch.Tensor, direction: torch.Tensor, centre: torch.Tensor, threshold: float) -> None:
        if hidden.shape[1] > 1 or self.gate is None or self.gate.shape[0] != hidden.shape[0]:
            self.scores = cosines(hidden[:, -1, :], centre, direction)
            self.gate = (self.scores >= threshold).to(hidden.dtype)

    def _steer(self, output: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        if self.plan.condition is None:
            return output + vector
        if self.gate is None:  # unreachable while steered layers follow the condition layer
            raise DirectionError("conditional steering ran before its condition was read")
        return output + self.gate[:, None, None] * vector


class SteeringCondition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: int = Field(ge=0)
    """Decoder layer whose output is read (0-based)."""
    threshold: float
    """Steer a row when cosine(residual − centre, direction) ≥ threshold."""


class SteeringFile(BaseModel):
    """`steering.json`: what `load_steering` attaches; the tensors are in `steering.safetensors` beside it
    (`steer.LAYER` vectors, `condition.direction`, `condition.centre`)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["refcal-steering-1"] = STEERING_FORMAT
    hidden_size: int = Field(ge=1)
    layers: list[int]
    """Decoder layers whose MLP output gets its `steer.LAYER` vector added."""
    condition: SteeringCondition | None = None
    """None: steering is unconditional."""
    tensors: str = STEERING_TENSORS
    note: str = ("Conditional activation steering by refcal: load with refcal.targets.steering.load_steering; "
                 "plain transformers ignores this file and answers unsteered.")


def save_steering(plan: SteeringPlan, directory: Path, hidden_size: int) -> None:
    """Write `steering.safetensors`, then `steering.json` (the file a loader looks for, so it comes last)."""
    from safetensors.torch import save_file

    tensors = {f"steer.{layer}": vector.float().contiguous() for layer, vector in plan.vectors.items()}
    condition = None
    if plan.condition is not None:
        tensors["condition.direction"] = plan.condition.direction.float().contiguous()
        tensors["condition.centre"] = plan.condition.centre.float().contiguous()
        condition = SteeringCondition(layer=plan.condition.layer, threshold=plan.condition.threshold)
    save_file(tensors, str(directory / STEERING_TENSORS))
    index = SteeringFile(hidden_size=hidden_size, layers=sorted(plan.vectors), condition=condition)
    write_atomic(directory / STEERING_FILE, index.model_dump_json(indent=2) + "\n")


def read_steering(directory: Path) -> SteeringPlan | None:
    """The plan saved in `directory`, None when it has no `steering.json`; InputFileError naming the file and
    field when it is malformed or its tensors are missing or misshapen."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / STEERING_FILE
    if not path.exists():
        return None
    try:
        index = SteeringFile.model_validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        raise InputFileError(first["msg"], path=str(path), field=".".join(map(str, first["loc"])) or None) from None
    tensor_path = directory / index.tensors
    try:
        tensors = load_file(str(tensor_path))
    except (OSError, SafetensorError) as error:
        raise InputFileError(f"cannot read the steering tensors: {error}", path=str(tensor_path)) from None
    names = [f"steer.{layer}" for layer in index.layers]
    if index.condition is not None:
        names += ["condition.direction", "condition.centre"]
    for name in names:
        if name not in tensors or tuple(tensors[name].shape) != (index.hidden_size,):
            raise InputFileError(f"needs a tensor of shape ({index.hidden_size},)", path=str(tensor_path), field=name)
    vectors = {layer: tensors[f"steer.{layer}"] for layer in index.layers}
    if index.condition is None:
        return SteeringPlan(vectors=vectors)
    if any(layer <= index.condition.layer for layer in index.layers):
        raise InputFileError("steered layers must come after the condition layer", path=str(path), field="layers")
    reading = ConditionReading(layer=index.condition.layer, direction=tensors["condition.direction"],
                               centre=tensors["condition.centre"], threshold=index.condition.threshold)
    return SteeringPlan(vectors=vectors, condition=reading)


def load_steering(model: Any, directory: Path) -> SteeringHooks | None:
    """Attach the steering saved in `directory` to a loaded model and return its hooks (keep them: `remove()`
    undoes it); None when the folder has no `steering.json`. For the `hf:` target, after the model is loaded."""
    plan = read_steering(Path(directory))
    if plan is None:
        return None
    hidden_size = model.config.hidden_size
    if any(vector.shape[0] != hidden_size for vector in plan.vectors.values()):
        raise InputFileError(f"steering vectors do not match the model's hidden size {hidden_size}",
                             path=str(Path(directory) / STEERING_TENSORS))
    return SteeringHooks(model, plan).attach()
