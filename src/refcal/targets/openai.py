"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, hosted APIs) over async httpx.

The API key is read from an environment variable whose *name* the user picks; the value lives only in
the request headers of the client, never in a fingerprint, a receipt, the store or a log.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import httpx

from refcal.errors import (
    FatalTargetError,
    RateLimitedTargetError,
    TransientTargetError,
)
from refcal.records import Completion, Message
from refcal.targets.base import Fingerprint, GenerationParams, RetryPolicy, Target
from refcal.targets.transport import ShardedTransport

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment, where credentials sometimes hide."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAITarget(Target):
    """POST {base_url}/chat/completions with the OpenAI request and response shapes."""

    def __init__(self, model: str, base_url: str, *, params: GenerationParams | None = None,
                 api_key_env: str = DEFAULT_API_KEY_ENV, concurrency: int = 8, timeout_s: float = 120.0,
                 retry: RetryPolicy | None = None, kind: str = "openai",
                 weights_digest: str | None = None) -> None:
        super().__init__(concurrency=concurrency, retry=retry)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.params = params or GenerationParams()
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self._fingerprint = Fingerprint(kind=kind, model=model, endpoint=redact_url(self.base_url),
                                        weights_digest=weights_digest, params=self.params)
        self._client: httpx.AsyncClient | None = None

    @property
    def fingerprint(self) -> Fingerprint:
        return self._fingerprint

    @property
    def description(self) -> str:
        return f"openai:{self.model}@{redact_url(self.base_url)}"

    async def start_async(self) -> None:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                         transport=ShardedTransport(self.concurrency),
                                         timeout=httpx.Timeout(self.timeout_s, connect=10.0))
        await self._check_reachable_async()

    async def close_async(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _check_reachable_async(self) -> None:
        """Fail fast: a server that cannot be connected to, or rejects the key, stops the drill early."""
        assert self._client is not None
        try:
            response = await self._client.get("/models", timeout=10.0)
        except httpx.HTTPError as error:
            await self.close_async()
            raise FatalTargetError(f"cannot reach {redact_url(self.base_url)}: {type(error).__name__}: "
                                   f"{error}") from None
        if response.status_code in (401, 403):
            await self.close_async()
            hint = f"; is ${self.api_key_env} set?" if self.api_key_env not in os.environ else ""
            raise FatalTargetError(f"{redact_url(self.base_url)} refused the credentials "
                                   f"(HTTP {response.status_code}){hint}")

    def _payload(self, messages: Sequence[Message]) -> dict[str, object]:
        payload: dict[str, object] = {
            "model": self.model,
            "messages": [message.model_dump() for message in messages],
            "temperature": self.params.temperature,
            "max_tokens": self.params.max_tokens,
        }
        if self.params.seed is not None:
            payload["seed"] = self.params.seed
        return payload

    async def _send_async(self, messages: Sequence[Message]) -> Completion:
        if self._client is None:
            raise FatalTargetError("target used outside `async with`")
        try:
            response = await self._client.post("/chat/completions", json=self._payload(messages))
        except httpx.TimeoutException as error:
            raise TransientTargetError(f"timeout: {type(error).__name__}") from None
        except httpx.TransportError as error:
            raise TransientTargetError(f"connection: {type(error).__name__}: {error}") from None
        return _completion_from(response)


def _completion_from(response: httpx.Response) -> Completion:
    status = response.status_code
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RateLimitedTargetError("HTTP 429 rate limited", retry_after=retry_after)
    if status == 408 or status >= 500:
        raise TransientTargetError(f"HTTP {status}: {response.text[:200]}")
    if status >= 400:
        raise FatalTargetError(f"HTTP {status}: {response.text[:300]}")
    try:
        body = response.json()
        choice = body["choices"][0]
        message = choice["message"]
        # Hosted APIs may put a policy refusal in `refusal` with no content; it is still the reply.
        text = message.get("content") or message.get("refusal") or ""
        if not isinstance(text, str):
            raise TypeError(f"content is {type(text).__name__}")
        usage = body.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise TransientTargetError(f"malformed response body: {type(error).__name__}: {error}") from None
    return Completion(text=text, finish_reason=choice.get("finish_reason"),
                      prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))
