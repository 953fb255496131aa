"""Reading a loaded model for direction editing: residuals at the last prompt token of every decoder layer,
first-token log-probabilities and their KL, greedy replies, and the refusal and condition `Directions` built from
residual means (and saved as safetensors)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as functional

from refcal.targets.steering import cosines, decoder_layers, hidden_states

Chat = list[dict[str, str]]


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


def condition_scores(model: Any, tokenizer: Any, chats: Sequence[Chat], directions: Directions, layer: int,
                     batch_size: int = 16) -> torch.Tensor:
    """(prompts,) the cosine a Condition at `layer` compares with its threshold."""
    reading = residuals(model, tokenizer, chats, batch_size)[:, layer, :]
    return cosines(reading, directions.condition_centre[layer], directions.condition[layer])
