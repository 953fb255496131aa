"""Saving a trained SFT model: the LoRA adapter merged into the base, weights and tokenizer staged and moved into
the output folder with `config.json` last, so it never holds a loadable half model."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from refcal.targets.weights import weights_digest

STAGING = ".merged-staging"


def merge_and_save(model: Any, tokenizer: Any, out: Path) -> tuple[str, float]:
    """Merge the adapter, save weights and tokenizer into a staging folder, then move them into `out` with
    `config.json` last (transformers cannot load a folder without it). Returns (weights digest, seconds)."""
    started = time.perf_counter()
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    try:
        merged = model.merge_and_unload()
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        (out / "config.json").unlink(missing_ok=True)  # a model from an earlier, unreceipted start is incomplete now
        for file in sorted(staging.iterdir(), key=lambda path: path.name == "config.json"):
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return weights_digest(out), round(time.perf_counter() - started, 2)
