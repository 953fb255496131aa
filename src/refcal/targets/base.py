"""The Target seam: what answers a chat. Subclasses implement `_send_async`; this base owns
concurrency limits, the deadline of each try, retries and the scrubbing of held secrets, so every kind of
target fails and recovers the same way, and no answer or error leaves a target holding a key refcal holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from refcal.errors import RateLimitedTargetError, TargetError, TransientTargetError
from refcal.files import canonical_json
from refcal.records import Completion, Message
from refcal.redact import scrub_secrets


class GenerationParams(BaseModel):
    """Sampling settings sent with every request; part of the fingerprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=0.0, ge=0.0)
    """0 for reproducible drills."""
    max_tokens: int = Field(default=256, ge=1)
    """Refusals live in the opening of a response; 256 tokens is enough to see them and their depth."""
    seed: int | None = None
    """Sampling seed, for servers that honour it."""


class Fingerprint(BaseModel):
    """What makes two targets interchangeable; keys the response cache. Never holds credentials."""

    model_config = ConfigDict(frozen=True)

    kind: str
    """`openai`, `llamacpp` or `hf`."""
    model: str
    """The model id as the target knows it."""
    weights_digest: str | None = None
    """sha256 of the weights file, where refcal can read it."""
    endpoint: str | None = None
    """Base URL without credentials, for remote targets."""
    params: GenerationParams = GenerationParams()

    @property
    def key(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(mode="json"))).hexdigest()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when it is longer."""

    max_tries: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, failed_tries: int, error: TargetError, rng: random.Random) -> float:
        backoff = rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (failed_tries - 1)))
        if isinstance(error, RateLimitedTargetError) and error.retry_after is not None:
            return max(backoff, min(error.retry_after, self.max_retry_after_s))
        return backoff


class TargetFailed(TargetError):
    """Every try failed; `last` is the final error and `tries` how many were made."""

    def __init__(self, last: TargetError, tries: int) -> None:
        super().__init__(f"{type(last).__name__} after {tries} tries: {last}")
        self.last, self.tries = last, tries


class Target(ABC):
    """Something that answers chats. Use as an async context manager: `async with target: ...`."""

    deadline_s: float | None = None
    """The longest one try may take, all of it (connect, wait, every byte of the answer); None: no limit."""

    def __init__(self, concurrency: int = 8, retry: RetryPolicy | None = None, seed: int = 0) -> None:
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self._slots = asyncio.Semaphore(concurrency)
        self._rng = random.Random(seed)

    @property
    @abstractmethod
    def fingerprint(self) -> Fingerprint:
        """Identity of this target for caching and receipts."""

    @property
    def description(self) -> str:
        """A human-readable spec without credentials."""
        return f"{self.fingerprint.kind}:{self.fingerprint.model}"

    async def start_async(self) -> None:
        """Acquire resources and fail fast if the target cannot answer at all."""

    async def close_async(self) -> None:
        """Release resources."""

    async def __aenter__(self) -> Self:
        await self.start_async()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_async()

    async def complete_async(self, messages: Sequence[Message]) -> Completion:
        """Send one chat, retrying transient failures; raises TargetFailed when all tries fail. Held secrets
        (`refcal.redact.hold_secret`) are scrubbed from the answer and from every error message."""
        failed = 0
        while True:
            async with self._slots:
                started = time.perf_counter()
                try:
                    completion = await self._try_async(messages)
                except TransientTargetError as error:
                    last: TargetError = _scrubbed(error)
                except TargetError as error:
                    raise TargetFailed(_scrubbed(error), failed + 1) from error
                else:
                    latency = time.perf_counter() - started
                    return completion.model_copy(update={
                        "text": scrub_secrets(completion.text), "latency_s": latency, "retries": failed,
                        "finish_reason": scrub_secrets(completion.finish_reason)
                        if completion.finish_reason is not None else None})
            failed += 1
            if failed >= self.retry.max_tries:
                raise TargetFailed(last, failed) from last
            await asyncio.sleep(self.retry.delay(failed, last, self._rng))

    async def _try_async(self, messages: Sequence[Message]) -> Completion:
        """One try within `deadline_s`: a server that trickles bytes cannot hold it open past the deadline
        (an HTTP client's timeout bounds each read, not the whole answer)."""
        if self.deadline_s is None:
            return await self._send_async(messages)
        deadline = asyncio.timeout(self.deadline_s)
        try:
            async with deadline:
                return await self._send_async(messages)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TransientTargetError(f"deadline: no complete answer within {self.deadline_s:g} s") from None

    @abstractmethod
    async def _send_async(self, messages: Sequence[Message]) -> Completion:
        """One try. Raise TransientTargetError to be retried, another TargetError to give up."""


def _scrubbed(error: TargetError) -> TargetError:
    """`error` with held secrets scrubbed from its message (in place, so its type and fields stay)."""
    error.args = tuple(scrub_secrets(arg) if isinstance(arg, str) else arg for arg in error.args)
    return error
