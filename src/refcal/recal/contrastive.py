"""The contrastive stage before SFT: separate harmful prompts from their benign look-alikes in the hidden states,
so that the refusal SFT teaches next has a line to follow (after DCR, which puts such a stage before safety tuning).

Each step takes `pairs_per_step` matched (harmful, look-alike) pairs, templates every prompt as a user turn with
the generation prompt, runs the decoder (no LM head) and pools one hidden state per prompt at `layer`. With x the
2n pooled states of the step, the loss is

    z = x − mean(x)                          centred on the step's mean, which removes the large component that
                                             every prompt shares (raw hidden states all have cosine near 1)
    c = mean of z over the harmful prompts   the harmful centroid; after centring it points along
                                             mean(harmful) − mean(look-alike), the step's "harmful direction"
    s_h,i = cos(z_harmful,i, c)              how far harmful prompt i sits on the harmful side (1 = on the centroid)
    s_l,i = cos(z_lookalike,i, c)            how far its look-alike twin sits on that side
    loss  = mean_i max(0, margin − (s_h,i − s_l,i))

a triplet margin loss per matched pair, anchored on the harmful centroid: it keeps harmful prompts together (s_h
towards 1) and pulls each look-alike away from the harmful side (s_l towards −1) until their gap reaches
`margin`, and then leaves the pair alone rather than distorting the representation further. A step needs at
least two pairs: with one, the centred look-alike is exactly the negated harmful prompt and the loss is always 0.

The gradient flows into the LoRA adapter that SFT trains next (layers above `layer` get none here). Nothing in
this module reads a file except `read_pairs`, which checks a pairs corpus whole before any training.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from refcal.errors import InputFileError
from refcal.files import json_lines

PAIR_FIELDS = ("harmful", "lookalike")
MAX_GRADIENT_NORM = 1.0
Curve = list[tuple[int, float]]
"""(step, loss) pairs, in step order."""
StepProgress = Callable[[int, int, float], None]
"""Called after each step with (step, total steps, loss)."""


class ContrastiveSettings(BaseModel):
    """Hyperparameters of the contrastive stage; used only when a pairs corpus is given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(30, ge=1)
    """Optimiser steps. 30 steps of 4 pairs take about a minute for SmolLM2-135M on 2 CPU cores."""
    pairs_per_step: int = Field(4, ge=2)
    """Pairs in each step; at least 2 (see the module docstring). Capped at the number of pairs given."""
    learning_rate: float = Field(1e-4, gt=0)
    """AdamW learning rate of the LoRA weights in this stage (no schedule: the stage is short)."""
    margin: float = Field(1.0, gt=0, le=2)
    """Gap of cosines (harmful minus look-alike, each in [−1, 1]) beyond which a pair adds no loss."""
    layer: int | None = Field(None, ge=1)
    """Which hidden state to pool: k is the output of decoder layer k (1-based). None takes the middle layer, where
    refusal directions are found most cleanly in the literature on refusal directions."""
    pooling: Literal["last", "mean"] = "last"
    """`last` takes the prompt's final token (the end of the generation prompt, where the model decides how to
    answer); `mean` averages over every token of the templated prompt."""


class ContrastivePair(NamedTuple):
    """A harmful prompt and its benign look-alike, from one line of a pairs corpus."""

    line: int
    harmful: str
    lookalike: str
    klass: str | None


def read_pairs(path: Path) -> list[ContrastivePair]:
    """Every row of a pairs corpus (`{"harmful": ..., "lookalike": ..., "klass": ..., "provenance": ...}`),
    checked whole; InputFileError naming file, line and field at the first bad row."""
    pairs = []
    for line, row in json_lines(path):
        if not isinstance(row, dict):
            raise InputFileError(f"expected a JSON object, got {type(row).__name__}", path=str(path), line=line)
        texts = [_pair_text(row, name, path, line) for name in PAIR_FIELDS]
        klass = row.get("klass")
        if klass is not None and not isinstance(klass, str):
            raise InputFileError("must be a string", path=str(path), line=line, field="klass")
        pairs.append(ContrastivePair(line, texts[0], texts[1], klass))
    if len(pairs) < 2:
        raise InputFileError(f"{len(pairs)} pair(s): the contrastive stage needs at least 2", path=str(path))
    return pairs


def _pair_text(row: dict[str, Any], name: str, path: Path, line: int) -> str:
    value = row.get(name)
    if value is None:
        hint = " (a chat row belongs in --corpus)" if "messages" in row else ""
        raise InputFileError(f"missing{hint}", path=str(path), line=line, field=name)
    if not isinstance(value, str) or not value.strip():
        raise InputFileError("must be a non-empty string", path=str(path), line=line, field=name)
    return value


def contrastive_loss(harmful: Any, lookalike: Any, margin: float) -> Any:
    """The loss of the module docstring for (n, d) tensors of pooled harmful and look-alike states, row i of
    each being one matched pair."""
    import torch

    states = torch.cat([harmful, lookalike]).float()
    centred = states - states.mean(dim=0, keepdim=True)
    centred_harmful, centred_lookalike = centred[: len(harmful)], centred[len(harmful):]
    centroid = centred_harmful.mean(dim=0, keepdim=True)
    harmful_side = torch.nn.functional.cosine_similarity(centred_harmful, centroid, dim=-1)
    lookalike_side = torch.nn.functional.cosine_similarity(centred_lookalike, centroid, dim=-1)
    return torch.relu(margin - (harmful_side - lookalike_side)).mean()


def pooled_states(model: Any, tokenizer: Any, prompts: Sequence[str], layer: int,
                  pooling: Literal["last", "mean"]) -> Any:
    """(len(prompts), hidden size) pooled hidden states of each prompt, templated as one user turn."""
    import torch

    rows = [list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               return_dict=False)) for prompt in prompts]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Padded on the left, so every prompt's last token sits in the last column.
    input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows])
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
    decoder = model.get_base_model().base_model if hasattr(model, "get_base_model") else model.base_model
    device = next(model.parameters()).device
    output = decoder(input_ids=input_ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
    states = output.hidden_states[layer]
    if pooling == "last":
        return states[:, -1, :]
    weights = mask.to(device).unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1)


def middle_layer(model: Any) -> int:
    return max(1, int(model.config.num_hidden_layers) // 2)


def check_layer(model: Any, settings: ContrastiveSettings) -> int:
    """The hidden-state index to pool; ValueError if the model has fewer layers than asked for."""
    layers = int(model.config.num_hidden_layers)
    if settings.layer is not None and settings.layer > layers:
        raise ValueError(f"contrastive.layer {settings.layer} is beyond the model's {layers} layers")
    return settings.layer or middle_layer(model)


def batches(count: int, size: int, steps: int, seed: int) -> list[list[int]]:
    """Pair indices for each step: a seeded sample of `size` distinct pairs (all of them when there are fewer)."""
    rng = random.Random(seed)
    size = min(size, count)
    return [rng.sample(range(count), size) for _ in range(steps)]


def train_contrastive(model: Any, tokenizer: Any, pairs: Sequence[ContrastivePair], settings: ContrastiveSettings,
                      seed: int, progress: StepProgress | None = None) -> Curve:
    """Train the model's trainable (LoRA) weights on the contrastive loss; returns the loss of every step.

    Raises:
        FloatingPointError: The loss stopped being finite (a learning rate far too high).
    """
    import torch

    layer = check_layer(model, settings)
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    model.train()
    curve: Curve = []
    plan = batches(len(pairs), settings.pairs_per_step, settings.steps, seed)
    for step, indices in enumerate(plan, start=1):
        chosen = [pairs[index] for index in indices]
        states = pooled_states(model, tokenizer, [pair.harmful for pair in chosen]
                               + [pair.lookalike for pair in chosen], layer, settings.pooling)
        loss = contrastive_loss(states[: len(chosen)], states[len(chosen):], settings.margin)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"contrastive loss is {value} at step {step}; lower contrastive.learning_rate")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, MAX_GRADIENT_NORM)
        optimiser.step()
        curve.append((step, value))
        if progress is not None:
            progress(step, len(plan), value)
    optimiser.zero_grad(set_to_none=True)
    return curve


def evaluate_contrastive(model: Any, tokenizer: Any, pairs: Sequence[ContrastivePair],
                         settings: ContrastiveSettings) -> float:
    """The loss over the given pairs without training (dropout off), to compare before and after."""
    import torch

    layer = check_layer(model, settings)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            states = pooled_states(model, tokenizer, [pair.harmful for pair in pairs]
                                   + [pair.lookalike for pair in pairs], layer, settings.pooling)
            return float(contrastive_loss(states[: len(pairs)], states[len(pairs):], settings.margin))
    finally:
        model.train(was_training)
