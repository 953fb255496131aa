"""Edits applied to a loaded model: ablation of the projection weights (in place, or for a block with the
originals restored after) and the `SteeringPlan` a `Steering` adds at run time (hooks in `refcal.targets.steering`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as functional

from refcal.recal.direction.edits import Ablation, Steering
from refcal.recal.direction.reading import Directions
from refcal.targets.steering import ConditionReading, SteeringPlan, decoder_layers


def direction_at(vectors: torch.Tensor, layer: int, index: float | None) -> torch.Tensor:
    """The layer's own unit direction, or one direction interpolated at layer position `index` (heretic's
    `direction_index`: a fractional position blends the two neighbouring layers)."""
    if index is None:
        return vectors[layer]
    low = min(max(int(index), 0), vectors.shape[0] - 1)
    high = min(low + 1, vectors.shape[0] - 1)
    return functional.normalize(vectors[low].lerp(vectors[high], index - low), dim=0)


PROJECTIONS = (("self_attn.o_proj", "attention"), ("mlp.down_proj", "mlp"))


def ablate(model: Any, directions: Directions, ablation: Ablation) -> None:
    """Edit the weights in place: W ← W − w·r rᵀ W for every projection with a non-zero kernel weight."""
    for layer_index, layer in enumerate(decoder_layers(model)):
        direction = direction_at(directions.refusal, layer_index, ablation.direction_index)
        for path, component in PROJECTIONS:
            weight = getattr(ablation, component).weight(layer_index)
            if weight == 0.0:
                continue
            matrix = layer.get_submodule(path).weight
            projector = torch.outer(direction, direction).to(matrix.device, matrix.dtype)
            with torch.no_grad():
                matrix.sub_(weight * (projector @ matrix))


@contextlib.contextmanager
def ablated(model: Any, directions: Directions, ablation: Ablation) -> Iterator[None]:
    """The model ablated for the block, its original projection weights restored after."""
    originals = {(index, path): layer.get_submodule(path).weight.detach().clone()
                 for index, layer in enumerate(decoder_layers(model)) for path, _ in PROJECTIONS}
    try:
        ablate(model, directions, ablation)
        yield
    finally:
        with torch.no_grad():
            for index, layer in enumerate(decoder_layers(model)):
                for path, _ in PROJECTIONS:
                    layer.get_submodule(path).weight.copy_(originals[index, path])


def steering_plan(directions: Directions, steering: Steering) -> SteeringPlan:
    """The vectors a Steering adds: kernel weight × the layer's harmful-harmless distance × the direction, on
    layers after the condition layer when there is a condition."""
    vectors = {}
    first = steering.condition.layer + 1 if steering.condition is not None else 0
    for layer in range(first, directions.layers):
        weight = steering.kernel.weight(layer)
        if weight != 0.0:
            direction = direction_at(directions.refusal, layer, steering.direction_index)
            vectors[layer] = weight * float(directions.refusal_scale[layer]) * direction
    condition = None
    if steering.condition is not None:
        layer = steering.condition.layer
        condition = ConditionReading(layer=layer, direction=directions.condition[layer].clone(),
                                     centre=directions.condition_centre[layer].clone(),
                                     threshold=steering.condition.threshold)
    return SteeringPlan(vectors=vectors, condition=condition)
