"""One log line → one Exchange: the request's messages, the reply's text, when, and how it was routed.

The default shape is the OpenAI chat exchange the guard writes (`refcal.guard.exchange_log`):
`{"request": {"messages": [...], "model": ...}, "response": {"choices": [{"message": {"content": ...}}]},
"time": ..., "route": ..., "risk": {...}}`; a top-level `messages` list is read too. Other shapes are read
through a FieldMap of dotted paths (`response=output.text,prompt=input,time=ts`; a number in a path indexes a
list). A line that cannot be read raises LineError with the reason and the field, for the sweep to quarantine;
an exchange whose upstream failed (`response` null, as the guard logs it) is an Exchange with `response=None`,
an error outcome, not a malformed line.

Pure: no I/O. orjson parses when it is installed (about four times faster than json on these lines); the
standard library otherwise, with the same results.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

try:  # an optional speed-up, never a requirement
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]
    _loads = json.loads
    _JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError)

FIELDS = ("prompt", "messages", "response", "time", "route", "class", "model", "risk")
"""What a FieldMap may point at. `prompt` (a string: the request as one user turn) and `messages` (a chat
list) are alternatives; `response` is required; the rest are optional."""
DEFAULT_PATHS = {"messages": "request.messages", "response": "response.choices.0.message.content", "time": "time",
                 "route": "route", "class": "class", "model": "request.model", "risk": "risk"}
MAX_SEGMENT_CHARS = 100


class LineError(ValueError):
    """A line that is not an exchange: why, and which field (None when the line is not JSON at all)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason if field is None else f"{reason} (field '{field}')")
        self.reason, self.field = reason, field


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and the reply it got, as read from a log line."""

    prompt: str
    """The last user message: what a refusal declined."""
    messages: tuple[Mapping[str, Any], ...]
    """The request's chat as logged (role/content dicts), for review samples."""
    response: str | None
    """The reply's text; None when the upstream failed (an error, judged by nobody)."""
    time: str | None
    """ISO 8601 when the log has a usable time."""
    route: str | None = None
    klass: str | None = None
    model: str | None = None
    risk: Mapping[str, Any] | None = None
    """A risk score logged beside the exchange (the guard's), reused when its scorer version matches."""


@dataclass(frozen=True)
class FieldMap:
    """Dotted paths to each field; parse with `parse_field_map`. The default reads the OpenAI chat shape."""

    paths: Mapping[str, tuple[str, ...]]

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_MAP


def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


DEFAULT_MAP = FieldMap({name: _split(path) for name, path in DEFAULT_PATHS.items()})


def parse_field_map(text: str | None) -> FieldMap:
    """`prompt=input.text,response=output,time=ts` → a FieldMap over the default paths. A `prompt` path
    replaces the default `messages` path."""
    if not text:
        return DEFAULT_MAP
    paths = dict(DEFAULT_MAP.paths)
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        name, equals, path = part.partition("=")
        name, path = name.strip(), path.strip()
        if not equals or not path or any(not piece for piece in path.split(".")):
            raise ValueError(f"--map takes FIELD=dotted.path pairs separated by commas, got '{part}'")
        if name not in FIELDS:
            raise ValueError(f"--map: unknown field '{name}' (known: {', '.join(FIELDS)})")
        if name == "prompt":
            paths.pop("messages", None)
        if name == "messages":
            paths.pop("prompt", None)
        paths[name] = _split(path)
    return FieldMap(paths)


def parse_line(raw: bytes, fields: FieldMap = DEFAULT_MAP) -> Exchange:
    """The exchange on one log line; LineError when the line is not one."""
    try:
        record = _loads(raw)
    except _JSON_ERRORS as error:
        raise LineError(f"invalid JSON: {_json_reason(error)}") from None
    except UnicodeDecodeError as error:
        raise LineError(f"not UTF-8 (byte {error.start})") from None
    if not isinstance(record, dict):
        raise LineError(f"not a JSON object (a {type(record).__name__})")
    if fields is DEFAULT_MAP:
        return _default_shape(record)
    return _mapped(record, fields)


def _default_shape(record: dict[str, Any]) -> Exchange:
    """The OpenAI chat shape, read without the generic path walk (the sweep's hot path)."""
    request = record.get("request")
    messages = request.get("messages") if isinstance(request, dict) else record.get("messages")
    if messages is None:
        raise LineError("missing the request's messages", "request.messages")
    response = _response_text(record.get("response"), "response.choices.0.message.content")
    model = request.get("model") if isinstance(request, dict) else None
    return _exchange(messages, None, response, record.get("time"), record.get("route"), record.get("class"),
                     model, record.get("risk"))


def _mapped(record: dict[str, Any], fields: FieldMap) -> Exchange:
    values = {name: _walk(record, path) for name, path in fields.paths.items()}
    if "response" not in fields.paths:
        raise LineError("no response path", "response")
    raw_response = values["response"]
    if raw_response is _MISSING:
        raise LineError("missing", ".".join(fields.paths["response"]))
    if isinstance(raw_response, dict) and "choices" in raw_response:
        response = _response_text(raw_response, ".".join(fields.paths["response"]))
    elif raw_response is None:
        response = None
    else:
        response = _text(raw_response, ".".join(fields.paths["response"]))
    prompt = values.get("prompt", _MISSING)
    messages = values.get("messages", _MISSING)
    if prompt is _MISSING and messages is _MISSING:
        path = fields.paths.get("prompt") or fields.paths.get("messages") or ("prompt",)
        raise LineError("missing", ".".join(path))
    return _exchange(None if messages is _MISSING else messages,
                     None if prompt is _MISSING else _text(prompt, ".".join(fields.paths["prompt"])), response,
                     *(None if values.get(name, _MISSING) is _MISSING else values[name]
                       for name in ("time", "route", "class", "model", "risk")))


_MISSING = object()


def _walk(record: Any, path: tuple[str, ...]) -> Any:
    value = record
    for part in path:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _response_text(response: Any, where: str) -> str | None:
    if response is None:
        return None  # the upstream failed: the guard logs a null response with an error beside it
    if not isinstance(response, dict):
        raise LineError(f"not an object (a {type(response).__name__})", "response")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise LineError("missing or empty", "response.choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        text = choice.get("text") if isinstance(choice, dict) else None  # the completions shape
        if isinstance(text, str):
            return text
        raise LineError("missing", "response.choices.0.message")
    content = message.get("content")
    if content is None:  # a tool call or a refusal field only: no text to judge
        refusal = message.get("refusal")
        return refusal if isinstance(refusal, str) else ""
    return _text(content, where)


def _text(value: Any, where: str) -> str:
    """A string, or the text parts of an OpenAI content list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [part.get("text", "") if isinstance(part, dict) else part for part in value]
        if all(isinstance(part, str) for part in parts):
            return "".join(parts)
    raise LineError(f"not text (a {type(value).__name__})", where)


def _exchange(messages: Any, prompt: str | None, response: str | None, time: Any, route: Any, klass: Any,
              model: Any, risk: Any) -> Exchange:
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise LineError("not a non-empty list", "request.messages")
        chat = tuple(messages)
        if prompt is None:
            prompt = _last_user(chat)
    else:
        assert prompt is not None
        chat = ({"role": "user", "content": prompt},)
    return Exchange(prompt=prompt, messages=chat, response=response, time=_time(time), route=_segment(route),
                    klass=_segment(klass), model=model if isinstance(model, str) else None,
                    risk=risk if isinstance(risk, dict) else None)


def _last_user(messages: tuple[Any, ...]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"), "request.messages[].content")
    raise LineError("no user message", "request.messages")


def _segment(value: Any) -> str | None:
    """A route or class name usable as a segment (strings and numbers; long names cut)."""
    if isinstance(value, str) and value:
        return value[:MAX_SEGMENT_CHARS]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _time(value: Any) -> str | None:
    """ISO 8601 as given when it parses; a number as seconds (or milliseconds) since the epoch; else None."""
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return None
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _json_reason(error: Exception) -> str:
    message = getattr(error, "msg", None) or str(error)
    column = getattr(error, "colno", None)
    return f"{message} at column {column}" if column else str(message)
