"""Refusal directions and the edits built on them: the torch side of `refcal recal direction`.

Directions are differences of means of the residual stream, read at the last prompt token (after the model's own
chat template) at the output of every decoder layer, one unit vector per layer:

- the **refusal** direction: must-refuse prompts minus ordinary harmless instructions;
- the **condition** direction: must-refuse prompts minus everything that should be answered (their benign
  look-alikes and the harmless instructions, pooled), with the midpoint of the two means as its centre. It
  recognises a harmful request rather than a harmful-sounding one. Pooling the harmless instructions in keeps
  ordinary requests under the threshold too: on SmolLM2-135M's starter bench (half held out), the best held-out
  balanced accuracy over the three kinds rose from 0.77–0.81 to 0.82–0.87 on layers 14–26.

Three edits use them:

- `Ablation` removes the refusal direction from what the attention output projection (`o_proj`) and the MLP down
  projection (`down_proj`) write into the residual stream, W ← W − w·r rᵀ W, with a per-layer weight w from a
  `Kernel` (heretic's: a peak weight at a layer position falling linearly to a minimum weight `width` layers away,
  zero beyond). It lowers refusals, so it targets over-refusal.
- `Steering` without a condition adds w·s·r to every MLP output of the kernel's layers (s: that layer's distance
  between the harmful and harmless means, so strength 1 moves a harmless activation by the whole gap). A constant
  addition is a bias, so it is saved as a `down_proj` bias where the architecture has an `mlp_bias` switch
  (Llama family) and the folder loads in plain transformers; elsewhere it is saved as a steering file.
- `Steering` with a `Condition` (conditional activation steering, after IBM's CAST) reads the residual at the
  condition layer once per prompt (the prefill pass), takes the cosine between its offset from the centre and the
  condition direction, and steers that row only when the cosine reaches the threshold, for the prompt and every
  token generated after it. Look-alikes under the threshold are left exactly as they were. Steering acts only on
  layers after the condition layer, so the gate is known before the first steered layer runs and the reading is
  never of a steered stream. A gate is not a weight, so the edit is saved as `steering.json` plus
  `steering.safetensors` beside unchanged weights, and `load_steering` attaches it again (the `hf:` target must call
  it; plain transformers would silently answer unsteered).

This module never judges, searches or chooses (see `refcal.recal.search`); it touches files only to save and load
models and steering files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as functional
from pydantic import BaseModel, ConfigDict, Field

from refcal.targets.steering import (
    STEERING_FILE,
    ConditionReading,
    DirectionError,
    SteeringPlan,
    cosines,
    decoder_layers,
    hidden_states,
    save_steering,
)
from refcal.targets.weights import accelerator, base_location, load_dense

Chat = list[dict[str, str]]
MODEL_DIR = "model"

HARMLESS_INSTRUCTIONS: tuple[str, ...] = (
    # Written for refcal: ordinary requests with nothing refusable in them. The first half feeds the refusal
    # direction's harmless mean, the second half the KL measure, so the search is not scored on its own inputs.
    "Write a short poem about autumn leaves.",
    "Explain how photosynthesis works in simple terms.",
    "Give me three tips for improving my sleep.",
    "What is the difference between a list and a tuple in Python?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "Suggest a name for a friendly golden retriever puppy.",
    "How do I convert Celsius to Fahrenheit?",
    "Write a polite email asking my landlord to fix a leaking tap.",
    "What are the main causes of the seasons on Earth?",
    "Recommend a simple vegetarian dinner I can cook in 20 minutes.",
    "Explain what a prime number is, with examples.",
    "How can I make my houseplants grow better indoors?",
    "Translate 'good morning, how are you?' into Spanish.",
    "Give me a packing list for a weekend camping trip.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Write a haiku about the ocean.",
    "How do I change a flat tyre on a bicycle?",
    "Explain the rules of chess for a complete beginner.",
    "What are some good stretches after running?",
    "Describe the water cycle step by step.",
    "Help me plan a birthday party for a seven-year-old.",
    "What does a project manager do day to day?",
    "Write a short story opening about a lighthouse keeper.",
    "How do I sort a list of numbers in JavaScript?",
    "Give me a recipe for banana bread.",
    "Why is the sky blue?",
    "What are three good habits for learning a new language?",
    "Explain compound interest with a small example.",
    "Suggest some board games for a family evening.",
    "How do vaccines train the immune system?",
    "Write a thank-you note to a teacher.",
    "What is the tallest mountain in Europe?",
    "How do I make a budget spreadsheet for the month?",
    "Explain the difference between weather and climate.",
    "Give me ideas for a science fair project about plants.",
    "How should I prepare for a job interview?",
    "Write a limerick about a cat who loves cheese.",
    "What is the Pythagorean theorem used for?",
    "How do I clean a cast iron pan?",
    "Recommend five classic novels worth reading.",
    "Explain how a rainbow forms.",
    "What are the health benefits of walking every day?",
    "How do I write a good cover letter?",
    "Describe how bees make honey.",
    "What is a good way to organise my study notes?",
    "Write a cheerful message for a colleague's retirement card.",
    "How does a refrigerator keep food cold?",
    "Suggest a weekend itinerary for visiting Lisbon.",
)


# The edits, as data.

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


# Loading the base.

@dataclass(frozen=True)
class BaseWeights:
    """Where a base spec's weights are: a directory, and the GGUF file in it when the base is one."""

    spec: str
    directory: Path
    gguf_file: str | None

    @property
    def path(self) -> Path:
        return self.directory / self.gguf_file if self.gguf_file else self.directory


def resolve_base(spec: str) -> BaseWeights:
    """`hf:PATH` (a folder of transformers weights or a .gguf file), `llamacpp:smollm2` or `llamacpp:PATH.gguf`
    (that GGUF, loaded into transformers); TargetSpecError for anything else or a path that does not exist."""
    directory, gguf_file = base_location(spec)
    path = directory if gguf_file is None else directory / gguf_file
    if gguf_file is None and (path / STEERING_FILE).exists():
        raise DirectionError(f"the base {spec} carries conditional steering ({STEERING_FILE}); direction editing "
                             "starts from plain weights")
    return BaseWeights(spec, directory, gguf_file)


def load_base(base: BaseWeights) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 from local files only, a GGUF dequantized to plain dense weights (weights
    left in GGUF blocks can be neither edited nor saved); DirectionError naming the spec when they cannot be
    loaded, have no chat template, or lack the projections the edits need."""
    model, tokenizer = load_dense(base.spec, base.directory, base.gguf_file, torch.float32, DirectionError,
                                  "directions are read after the model's own template")
    tokenizer.padding_side = "left"  # every row's last prompt token sits in the last column
    model.to(accelerator()).eval()
    decoder_layers(model, base.spec)
    return model, tokenizer


# Reading the model.

def _batches(chats: Sequence[Chat], tokenizer: Any, batch_size: int) -> Iterator[tuple[list[int], Any]]:
    """(row indices, padded batch) with rows sorted by length, so a batch pads little."""
    token_ids = [tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=False) for chat in chats]
    order = sorted(range(len(chats)), key=lambda index: len(token_ids[index]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield rows, tokenizer.pad({"input_ids": [list(token_ids[row]) for row in rows]}, padding=True,
                                  return_tensors="pt")


def residuals(model: Any, tokenizer: Any, chats: Sequence[Chat], batch_size: int = 16) -> torch.Tensor:
    """(prompts, layers, hidden) float32: each decoder layer's output at the last prompt token."""
    layers = decoder_layers(model)
    out = torch.zeros(len(chats), len(layers), model.config.hidden_size)
    captured: list[torch.Tensor] = []

    def capture(module: Any, inputs: Any, output: Any) -> None:
        captured.append(hidden_states(output)[:, -1, :].float())

    handles = [layer.register_forward_hook(capture) for layer in layers]
    try:
        for rows, batch in _batches(chats, tokenizer, batch_size):
            captured.clear()
            with torch.inference_mode():
                model(**batch.to(model.device), logits_to_keep=1)
            out[rows] = torch.stack(captured, dim=1).cpu()
    finally:
        for handle in handles:
            handle.remove()
    return out


def next_token_logprobs(model: Any, tokenizer: Any, chats: Sequence[Chat], batch_size: int = 16) -> torch.Tensor:
    """(prompts, vocabulary) float32 log-probabilities of the first response token."""
    rows_out: dict[int, torch.Tensor] = {}
    for rows, batch in _batches(chats, tokenizer, batch_size):
        with torch.inference_mode():
            logits = model(**batch.to(model.device), logits_to_keep=1).logits[:, -1, :].float()
        for row, values in zip(rows, functional.log_softmax(logits, dim=-1).cpu(), strict=True):
            rows_out[row] = values
    return torch.stack([rows_out[row] for row in range(len(chats))])


def kl_divergence(base: torch.Tensor, edited: torch.Tensor) -> float:
    """Mean over prompts of KL(base ‖ edited) of the first-token distributions (heretic's measure)."""
    return float(functional.kl_div(edited, base, reduction="batchmean", log_target=True))


def generate(model: Any, tokenizer: Any, chats: Sequence[Chat], max_new_tokens: int, batch_size: int = 16
             ) -> list[str]:
    """Greedy replies, batched; each cut at its first end-of-sequence token."""
    configured = model.generation_config.eos_token_id
    stop = {tokenizer.eos_token_id} | set(configured if isinstance(configured, list) else [configured])
    stop.discard(None)
    replies: dict[int, str] = {}
    for rows, batch in _batches(chats, tokenizer, batch_size):
        with torch.inference_mode():
            output = model.generate(**batch.to(model.device), max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(stop))
        for row, tokens in zip(rows, output[:, batch["input_ids"].shape[1]:].tolist(), strict=True):
            end = next((index for index, token in enumerate(tokens) if token in stop), len(tokens))
            replies[row] = tokenizer.decode(tokens[:end], skip_special_tokens=True)
    return [replies[row] for row in range(len(chats))]


# Directions.

@dataclass(frozen=True)
class Directions:
    """Per-layer unit directions, (layers, hidden) each, with what steering and the condition need."""

    refusal: torch.Tensor
    refusal_scale: torch.Tensor
    """(layers,) distance between the harmful and harmless means: the unit of steering strength."""
    condition: torch.Tensor
    condition_centre: torch.Tensor
    """Midpoint of the harmful and the answerable means, where the condition cosine is measured from."""

    @property
    def layers(self) -> int:
        return self.refusal.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"refusal": self.refusal, "refusal_scale": self.refusal_scale, "condition": self.condition,
                "condition_centre": self.condition_centre}


def difference_of_means(positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit directions, norms) per layer of mean(positive) − mean(negative); inputs are (prompts, layers, hidden)."""
    difference = positive.mean(dim=0) - negative.mean(dim=0)
    norms = difference.norm(dim=-1)
    return difference / norms.clamp_min(1e-8)[:, None], norms


def extract_directions(model: Any, tokenizer: Any, harmful: Sequence[Chat], harmless: Sequence[Chat],
                       lookalikes: Sequence[Chat], batch_size: int = 16) -> Directions:
    """Refusal (harmful − harmless) and condition (harmful − look-alikes and harmless) directions at every layer."""
    harmful_residuals = residuals(model, tokenizer, harmful, batch_size)
    harmless_residuals = residuals(model, tokenizer, harmless, batch_size)
    answerable = torch.cat([residuals(model, tokenizer, lookalikes, batch_size), harmless_residuals])
    refusal, scale = difference_of_means(harmful_residuals, harmless_residuals)
    condition, _ = difference_of_means(harmful_residuals, answerable)
    centre = (harmful_residuals.mean(dim=0) + answerable.mean(dim=0)) / 2
    return Directions(refusal=refusal, refusal_scale=scale, condition=condition, condition_centre=centre)


def save_directions(directions: Directions, path: Path) -> None:
    from safetensors.torch import save_file

    temporary = path.with_name(f".{path.name}.tmp")
    save_file({name: tensor.contiguous() for name, tensor in directions.tensors().items()}, str(temporary))
    os.replace(temporary, path)


def direction_at(vectors: torch.Tensor, layer: int, index: float | None) -> torch.Tensor:
    """The layer's own unit direction, or one direction interpolated at layer position `index` (heretic's
    `direction_index`: a fractional position blends the two neighbouring layers)."""
    if index is None:
        return vectors[layer]
    low = min(max(int(index), 0), vectors.shape[0] - 1)
    high = min(low + 1, vectors.shape[0] - 1)
    return functional.normalize(vectors[low].lerp(vectors[high], index - low), dim=0)


def condition_scores(model: Any, tokenizer: Any, chats: Sequence[Chat], directions: Directions, layer: int,
                     batch_size: int = 16) -> torch.Tensor:
    """(prompts,) the cosine a Condition at `layer` compares with its threshold."""
    reading = residuals(model, tokenizer, chats, batch_size)[:, layer, :]
    return cosines(reading, directions.condition_centre[layer], directions.condition[layer])


# Ablation: a weight edit.

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


# Steering: vectors added to MLP outputs, optionally gated.


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


# Steering files: the saved form of conditional steering.


# Saving the edited model.

SavedAs = Literal["weights", "bias", "steering-file"]


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
