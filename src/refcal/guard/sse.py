"""Server-sent chat completion chunks: assembling a streamed answer into one chat completion for the log, and
writing a finished completion (the gate's fixed refusal) as a stream. Pure: bytes in, dicts out."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

DONE = "[DONE]"


class CompletionAssembler:
    """Feed it the bytes of an SSE stream as they pass; `completion()` is the chat completion they add up to.

    Events may be split anywhere across network chunks, so lines are buffered until complete. Events that are
    not JSON (comments, keep-alives, `[DONE]`) are skipped; an `error` event is kept as `error`."""

    def __init__(self) -> None:
        self._buffer = b""
        self._meta: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.error: Any = None
        self.done = False
        self.events = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip().decode("utf-8", errors="replace")
        if payload == DONE:
            self.done = True
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            return
        if isinstance(event, dict):
            self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        self.events += 1
        if "error" in event:
            self.error = event["error"]
            return
        for key in ("id", "model", "created", "system_fingerprint"):
            if key in event:
                self._meta.setdefault(key, event[key])
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            if isinstance(choice, dict):
                self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        slot = self._choices.setdefault(int(choice.get("index", 0)), {"role": "assistant", "content": "",
                                                                       "finish_reason": None})
        delta = choice.get("delta") or {}
        if isinstance(delta.get("role"), str):
            slot["role"] = delta["role"]
        if isinstance(delta.get("content"), str):
            slot["content"] += delta["content"]
        if isinstance(delta.get("reasoning_content"), str):
            slot["reasoning_content"] = slot.get("reasoning_content", "") + delta["reasoning_content"]
        if choice.get("finish_reason") is not None:
            slot["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        """The assembled `chat.completion` (what a non-streamed request would have returned)."""
        choices = []
        for index in sorted(self._choices):
            slot = dict(self._choices[index])
            finish_reason = slot.pop("finish_reason")
            choices.append({"index": index, "message": slot, "finish_reason": finish_reason})
        completion: dict[str, Any] = {**self._meta, "object": "chat.completion", "choices": choices}
        if self.usage is not None:
            completion["usage"] = self.usage
        return completion


def fixed_completion(text: str, model: str) -> dict[str, Any]:
    """A valid chat completion whose one answer is `text` (the gate's fixed refusal)."""
    return {"id": f"chatcmpl-refcal-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def completion_events(completion: dict[str, Any]) -> bytes:
    """A finished completion as the SSE stream a streaming client expects: role and content in one chunk, the
    finish reason in the next, then `[DONE]`."""
    base = {key: completion[key] for key in ("id", "created", "model")}
    chunks = []
    for choice in completion["choices"]:
        index = choice["index"]
        chunks.append({**base, "object": "chat.completion.chunk",
                       "choices": [{"index": index, "delta": dict(choice["message"]), "finish_reason": None}]})
        chunks.append({**base, "object": "chat.completion.chunk",
                       "choices": [{"index": index, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    return b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks) + f"data: {DONE}\n\n".encode()


def error_event(error: dict[str, Any]) -> bytes:
    """An error after the stream has started (the status line is already sent): one `data:` event."""
    return f"data: {json.dumps(error)}\n\n".encode()
