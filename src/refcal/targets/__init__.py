"""Targets: what answers. A spec string names one:

- `llamacpp:smollm2` (the embedded default) or `llamacpp:PATH.gguf`: served in-process by xllamacpp;
- `openai:MODEL@BASE_URL`: any OpenAI-compatible chat endpoint;
- `hf:PATH`: local transformers weights (a directory, or a .gguf file), batched; needs `refcal[hf]`.
"""

from __future__ import annotations

import re

from refcal.errors import TargetSpecError
from refcal.records import Completion
from refcal.targets.base import Fingerprint, GenerationParams, RetryPolicy, Target, TargetFailed
from refcal.targets.llamacpp import LlamaCppTarget
from refcal.targets.openai import DEFAULT_API_KEY_ENV, OpenAITarget, redact_url

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_TARGET",
    "Completion",
    "Fingerprint",
    "GenerationParams",
    "LlamaCppTarget",
    "OpenAITarget",
    "RetryPolicy",
    "Target",
    "TargetFailed",
    "make_target",
    "redact_url",
]

DEFAULT_TARGET = "llamacpp:smollm2"
_OPENAI_SPEC = re.compile(r"^openai:(?P<model>[^@\s]+)@(?P<url>https?://\S+)$")


def make_target(spec: str, *, params: GenerationParams | None = None, concurrency: int | None = None,
                api_key_env: str = DEFAULT_API_KEY_ENV, timeout_s: float = 120.0) -> Target:
    """Build a target from its spec string; raises TargetSpecError with the accepted forms."""
    kind, _, rest = spec.partition(":")
    if kind == "openai":
        match = _OPENAI_SPEC.match(spec)
        if match is None:
            raise TargetSpecError(f"bad target spec '{spec}': expected openai:MODEL@http(s)://HOST[:PORT]/v1")
        return OpenAITarget(match["model"], match["url"], params=params, api_key_env=api_key_env,
                            concurrency=concurrency or 8, timeout_s=timeout_s)
    if kind == "llamacpp" and rest:
        return LlamaCppTarget(rest, params=params, slots=concurrency or 4)
    if kind == "hf" and rest:
        from refcal.targets.hf import HFTarget

        return HFTarget(rest, params=params, batch_size=concurrency or 8)
    raise TargetSpecError(f"bad target spec '{spec}': expected llamacpp:smollm2, llamacpp:PATH.gguf, "
                          "openai:MODEL@BASE_URL or hf:PATH")
