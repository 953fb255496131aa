"""One JSONL line per exchange through the guard, in the OpenAI chat request/response shape the watch sweep
reads by default. Text fields are redacted unless the user keeps text; API keys never reach this module.

A line: `{"time", "request", "response", "risk", "route", "status", "latency_ms"}` and, when the upstream
failed, `"error"` (then `response` is null)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from refcal.redact import redact

Route = Literal["upstream", "gate", "refused"]
TEXT_KEYS = frozenset({"content", "text", "arguments", "reasoning_content", "refusal"})
"""Keys whose string values carry what people and models wrote; everything else (model, role, ids, finish
reasons, numbers) is kept as is so the log stays readable and joinable."""


class ExchangeRecord(BaseModel):
    """One exchange through the guard."""

    time: str
    """When the request arrived (ISO 8601, UTC)."""
    request: dict[str, Any]
    """The client's chat request as received (text redacted by default)."""
    response: dict[str, Any] | None
    """The chat completion returned (assembled from the chunks when streamed); null when the upstream failed."""
    risk: dict[str, Any]
    """The request's risk: score 0–10, P(must refuse), nearest bench items, scorer version, threshold."""
    route: Route
    """Who answered: the upstream, the gate upstream, or the guard's fixed refusal."""
    status: int
    """HTTP status returned to the client."""
    latency_ms: float
    """From the request's arrival to the last byte sent back."""
    error: dict[str, Any] | None = None
    """The OpenAI-style error returned (or sent mid-stream) when the upstream failed."""


def redact_text_fields(value: Any) -> Any:
    """A copy of `value` with the strings under TEXT_KEYS (at any depth, in strings or lists) redacted."""
    if isinstance(value, dict):
        return {key: _redact_all(item) if key in TEXT_KEYS else redact_text_fields(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_text_fields(item) for item in value]
    return value


def _redact_all(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | dict):
        return redact_text_fields(value)
    return value


class ExchangeLog:
    """Appends records to a JSONL file, one whole line per write (safe from several tasks or threads)."""

    def __init__(self, path: Path, keep_text: bool = False) -> None:
        self.path = path
        self.keep_text = keep_text
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a", encoding="utf-8")

    def write(self, record: ExchangeRecord) -> None:
        if not self.keep_text:
            record = record.model_copy(update={"request": redact_text_fields(record.request),
                                               "response": redact_text_fields(record.response)})
        line = record.model_dump_json() + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            self._handle.close()
