"""Saving an edited model: the base with an edit applied into `OUT/model` (edited weights, steering as
`down_proj` biases, or the steering files beside unchanged weights), staged and renamed so it is always whole."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from refcal.recal.direction.apply import ablated, steering_plan
from refcal.recal.direction.edits import MODEL_DIR, Ablation, Edit, SavedAs
from refcal.recal.direction.reading import Directions
from refcal.targets.steering import SteeringPlan, decoder_layers, save_steering


def save_edited(model: Any, tokenizer: Any, directions: Directions, edit: Edit, out: Path) -> SavedAs:
    """Save the base with `edit` applied into `out/model`: safetensors, tokenizer and, for conditional steering
    (or unconditional steering on an architecture without `mlp_bias`), the steering files. Written to a staging
    folder and renamed, so `out/model` is always a whole model. The in-memory model is left unedited."""
    staging, final = out / f".{MODEL_DIR}-staging", out / MODEL_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        saved_as = _save_into(model, tokenizer, directions, edit, staging)
        previous = out / f".{MODEL_DIR}-previous"
        shutil.rmtree(previous, ignore_errors=True)
        if final.exists():
            os.replace(final, previous)
        os.replace(staging, final)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return saved_as


def _save_into(model: Any, tokenizer: Any, directions: Directions, edit: Edit, folder: Path) -> SavedAs:
    tokenizer.save_pretrained(str(folder))
    if isinstance(edit, Ablation):
        with ablated(model, directions, edit):
            model.save_pretrained(str(folder))
        return "weights"
    plan = steering_plan(directions, edit)
    if plan.condition is None and hasattr(model.config, "mlp_bias"):
        with _as_biases(model, plan):
            model.save_pretrained(str(folder))
        return "bias"
    model.save_pretrained(str(folder))
    save_steering(plan, folder, model.config.hidden_size)
    return "steering-file"


@contextlib.contextmanager
def _as_biases(model: Any, plan: SteeringPlan) -> Iterator[None]:
    """Unconditional steering as MLP biases for the block: `mlp_bias` gives gate, up and down projections a bias,
    so each gets zeros (or keeps its own) and the steered layers' `down_proj` bias gains the steering vector."""
    layers = decoder_layers(model)
    added, originals = [], {}
    with torch.no_grad():
        for index, layer in enumerate(layers):
            for name in ("gate_proj", "up_proj", "down_proj"):
                module = getattr(layer.mlp, name, None)
                if not isinstance(module, torch.nn.Linear):
                    continue
                if module.bias is None:
                    module.bias = torch.nn.Parameter(torch.zeros(module.out_features, dtype=module.weight.dtype,
                                                                 device=module.weight.device), requires_grad=False)
                    added.append(module)
                else:
                    originals[module] = module.bias.detach().clone()
            if index in plan.vectors:
                layer.mlp.down_proj.bias.add_(plan.vectors[index].to(layer.mlp.down_proj.bias.dtype))
    previous = model.config.mlp_bias
    model.config.mlp_bias = True
    try:
        yield
    finally:
        model.config.mlp_bias = previous
        for module in added:
            module.bias = None
        with torch.no_grad():
            for module, bias in originals.items():
                module.bias.copy_(bias)
