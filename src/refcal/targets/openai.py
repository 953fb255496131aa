"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, hosted APIs) over async httpx.

The API key is read from an environment variable whose *name* the user picks; the value lives only in
the request headers of the client, never in a fingerprint, a receipt, the store or a log: it is held
(`refcal.redact.hold_secret`) so that a server echoing it back has it scrubbed from what refcal keeps. A base
URL that carries credentials (`user:KEY@host`), a query string or a fragment is refused: a resumed run could
not send them again, and a path appended after a query goes nowhere.

Each try has a deadline (`timeout_s`, or `$REFCAL_TIMEOUT_S` when set) over the whole request, and a body
over MAX_BODY_BYTES is not read on. Every answer is parsed strictly: a body that is not the chat completion
shape (not JSON, no choices, a null message, content that is not text, usage or token counts of the wrong
type) is a transient error, retried and then recorded as an error with the reason, never judged.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from refcal.errors import (
    FatalTargetError,
    RateLimitedTargetError,
    TargetSpecError,
    TransientTargetError,
)
from refcal.records import Completion, Message
from refcal.redact import hold_secret
from refcal.targets.base import Fingerprint, GenerationParams, RetryPolicy, Target
from refcal.targets.transport import ShardedTransport

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
TIMEOUT_ENV = "REFCAL_TIMEOUT_S"
"""When set, the deadline of each try in seconds, over the timeout a target was built with."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""A response body larger than this is an error (not read on): no chat answer refcal drills is this long."""
REACH_DEADLINE_S = 15.0
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment, where credentials sometimes hide."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def check_base_url(url: str) -> None:
    """Refuse a base URL that carries credentials, a query or a fragment (TargetSpecError, one line)."""
    parts = urlsplit(url)
    shown = redact_url(url)
    where = ("credentials (user:password@)" if "@" in parts.netloc else "a query string (?...)" if parts.query
             else "a fragment (#...)" if parts.fragment else None)
    if where is None and "?" not in url and "#" not in url:
        return
    where = where or "a query string or fragment"
    raise TargetSpecError(f"the target URL {shown} carries {where}: refcal does not keep or resend those; put the "
                          "API key in an environment variable and name it with --api-key-env")


def deadline_from_env(default: float) -> float:
    """`$REFCAL_TIMEOUT_S` when set (a positive number of seconds), else `default`."""
    value = os.environ.get(TIMEOUT_ENV)
    if value is None or not value.strip():
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise TargetSpecError(f"${TIMEOUT_ENV} must be a positive number of seconds, got '{value}'")
    return seconds


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
        check_base_url(base_url)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.params = params or GenerationParams()
        self.api_key_env = api_key_env
        self.timeout_s = deadline_from_env(timeout_s)
        self.deadline_s = self.timeout_s
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
            hold_secret(key)
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
            async with asyncio.timeout(REACH_DEADLINE_S):
                response = await self._client.get("/models", timeout=10.0)
        except (httpx.HTTPError, TimeoutError) as error:
            await self.close_async()
            why = f"{type(error).__name__}: {error}" if str(error) else f"no answer within {REACH_DEADLINE_S:g} s"
            raise FatalTargetError(f"cannot reach {redact_url(self.base_url)}: {why}") from None
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
            async with self._client.stream("POST", "/chat/completions", json=self._payload(messages)) as response:
                body = await _read_body(response)
        except httpx.TimeoutException as error:
            raise TransientTargetError(f"timeout: {type(error).__name__}") from None
        except httpx.TransportError as error:
            raise TransientTargetError(f"connection: {type(error).__name__}: {error}") from None
        return completion_from(response.status_code, response.headers, body)


async def _read_body(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise FatalTargetError(f"HTTP {response.status_code}: response body over {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _snippet(body: bytes, limit: int) -> str:
    return body[:limit * 4].decode("utf-8", "replace")[:limit]


def completion_from(status: int, headers: Mapping[str, str], body: bytes) -> Completion:
    """The completion in one HTTP answer, or the TargetError it amounts to (transient when worth a retry)."""
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        raise RateLimitedTargetError("HTTP 429 rate limited", retry_after=retry_after)
    if status == 408 or status >= 500:
        raise TransientTargetError(f"HTTP {status}: {_snippet(body, 200)}")
    if status >= 400:
        raise FatalTargetError(f"HTTP {status}: {_snippet(body, 300)}")
    if not 200 <= status < 300:
        location = headers.get("location")
        moved = f" to {redact_url(location)}" if location else ""
        raise FatalTargetError(f"HTTP {status}{moved}: refcal does not follow redirects; give the final URL")
    try:
        return parse_completion(json.loads(body))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError too
        raise TransientTargetError(f"malformed response: {error}") from None


def parse_completion(body: Any) -> Completion:
    """A chat completion from a decoded JSON body, checked field by field; raises ValueError with the reason."""
    if not isinstance(body, dict):
        raise ValueError(f"the body is {_kind(body)}, not an object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError(f"choices is {_kind(choices)}, not a non-empty list")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise ValueError(f"choices[0] is {_kind(choice)}, not an object")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ValueError(f"choices[0].message is {_kind(message)}, not an object")
    content, refusal = message.get("content"), message.get("refusal")
    for name, value in (("content", content), ("refusal", refusal)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"choices[0].message.{name} is {_kind(value)}, not a string")
    # Hosted APIs may put a policy refusal in `refusal` with no content; it is still the reply.
    text = _LONE_SURROGATE.sub("\ufffd", content or refusal or "")  # JSON may spell one; UTF-8 cannot store it
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise ValueError(f"choices[0].finish_reason is {_kind(finish_reason)}, not a string")
    finish_reason = _LONE_SURROGATE.sub("\ufffd", finish_reason) if finish_reason is not None else None
    usage = body.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise ValueError(f"usage is {_kind(usage)}, not an object")
    return Completion(text=text, finish_reason=finish_reason, prompt_tokens=_count(usage, "prompt_tokens"),
                      completion_tokens=_count(usage, "completion_tokens"))


def _count(usage: dict[str, Any], name: str) -> int | None:
    value = usage.get(name)
    if value is None:
        return None
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0:
        raise ValueError(f"usage.{name} is {_kind(value)}, not a count")
    return int(value)


def _kind(value: Any) -> str:
    """How a JSON value is described in a reason: its type, and the value itself when it is short."""
    if value is None:
        return "null"
    shown = json.dumps(value, ensure_ascii=False)
    name = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
    return f"{name} ({shown})" if len(shown) <= 40 else name
