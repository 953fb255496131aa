"""The base a direction search edits: plain weights (not a folder that already carries conditional steering),
found and loaded by `refcal.targets.weights`, in float32 on the accelerator, with the projections edits change."""

from __future__ import annotations

from typing import Any

import torch

from refcal.targets.steering import STEERING_FILE, DirectionError, decoder_layers
from refcal.targets.weights import BaseWeights, accelerator, load_dense
from refcal.targets.weights import resolve_base as locate_base


def resolve_base(spec: str) -> BaseWeights:
    """`hf:PATH` (a folder of transformers weights or a .gguf file), `llamacpp:smollm2` or `llamacpp:PATH.gguf`
    (that GGUF, loaded into transformers); TargetSpecError for anything else or a path that does not exist,
    DirectionError for a folder with a steering file."""
    base = locate_base(spec)
    if base.gguf_file is None and (base.path / STEERING_FILE).exists():
        raise DirectionError(f"the base {spec} carries conditional steering ({STEERING_FILE}); direction editing "
                             "starts from plain weights")
    return base


def load_base(base: BaseWeights) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 from local files only, a GGUF dequantized to plain dense weights (weights
    left in GGUF blocks can be neither edited nor saved); DirectionError naming the spec when they cannot be
    loaded, have no chat template, or lack the projections the edits need."""
    model, tokenizer = load_dense(base, torch.float32, DirectionError,
                                  "directions are read after the model's own template")
    tokenizer.padding_side = "left"  # every row's last prompt token sits in the last column
    model.to(accelerator()).eval()
    decoder_layers(model, base.spec)
    return model, tokenizer
