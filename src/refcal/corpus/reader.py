"""Read training corpora as JSONL: the user-side texts that a contamination check compares with frozen benches,
and the chat rows SFT trains on, each checked whole.

Three row shapes, the ones TRL reads: chat (`{"messages": [{"role", "content"}, ...]}`), prompt/completion
(`{"prompt": "..." | [messages], "completion": ...}`) and plain text (`{"text": "..."}`). Every user message
of a chat, the prompt, or the text becomes one `CorpusText` that remembers its file, line and field. Other
keys of a row (completion, ids, metadata) are allowed and ignored. A malformed line stops the read with the
file, line and field named, as a bad bench line does; the file is streamed, never held whole in memory.

`read_chat_corpus` is stricter, for training: chat rows only, roles a chat template renders (`TRAINING_ROLES`),
string contents, and the last message the assistant's reply that SFT learns.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from refcal.errors import InputFileError
from refcal.files import json_lines

MAX_LINE_BYTES = 8_000_000
"""Longer than a bench's limit: a training row may carry a long document or a long conversation."""
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
"""Roles accepted in a chat; an unknown role is an error, because a typo such as `usr` would hide a user turn
from the check."""
ROW_KEYS = ("messages", "prompt", "text")
TRAINING_ROLES = ("system", "user", "assistant")
"""Roles a training chat may use."""


class CorpusText(NamedTuple):
    """One user-side text of a corpus row. A tuple, not a model: a corpus holds hundreds of thousands."""

    path: str
    """The corpus file."""
    line: int
    """1-based line of the row."""
    field: str
    """Where in the row the text sits, e.g. `messages.2.content`, `prompt`, `text`."""
    text: str
    """The text as written."""


def read_corpus(path: str | Path) -> Iterator[CorpusText]:
    """The user-side texts of one JSONL corpus file, in file order; InputFileError on the first bad line."""
    where = str(path)
    path = Path(path)
    if not path.is_file():
        raise InputFileError("no such file", path=where)
    rows = 0
    with path.open("rb") as handle:
        for number, raw in _lines(handle, where):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            if not raw.strip():
                continue
            rows += 1
            for field, text in row_texts(_parse(raw, where, number), where, number):
                yield CorpusText(where, number, field, text)
    if rows == 0:
        raise InputFileError("empty file: no rows", path=where)


def read_corpora(paths: Iterable[str | Path]) -> list[CorpusText]:
    """Every user-side text of several corpus files, in order."""
    return [text for path in paths for text in read_corpus(path)]


def row_texts(row: Any, path: str, line: int) -> list[tuple[str, str]]:
    """(field, text) for each user-side text of one parsed row."""
    if not isinstance(row, dict):
        raise InputFileError(f"expected a JSON object, got {type(row).__name__}", path=path, line=line)
    present = [key for key in ROW_KEYS if key in row]
    if not present:
        raise InputFileError("no 'messages', 'prompt' or 'text' field (a chat, prompt/completion or text row)",
                             path=path, line=line)
    if len(present) > 1:
        raise InputFileError(f"both '{present[0]}' and '{present[1]}': a row gives exactly one of them",
                             path=path, line=line, field=present[1])
    key = present[0]
    if key == "messages" or (key == "prompt" and isinstance(row[key], list)):
        return _user_messages(row[key], key, path, line)
    return [(key, _text(row[key], key, path, line))]


def _lines(handle: Any, path: str) -> Iterator[tuple[int, bytes]]:
    """(1-based number, bytes) of each line of a binary file, refusing a line over the limit before it is read
    whole."""
    number = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise InputFileError(f"line over the {MAX_LINE_BYTES:,}-byte limit", path=path, line=number)
        yield number, raw


def _parse(raw: bytes, path: str, line: int) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InputFileError(f"not UTF-8 (byte {error.start} of the line)", path=path, line=line) from None
    except json.JSONDecodeError as error:
        raise InputFileError(f"invalid JSON: {error.msg} at column {error.colno}", path=path, line=line) from None


def _message_list(messages: Any, field: str, path: str, line: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, message) of each message of a non-empty list of message objects, each checked as it is reached
    (so the first bad message, in order, is the one named)."""
    if not isinstance(messages, list) or not messages:
        raise InputFileError("must be a non-empty list of messages", path=path, line=line, field=field)
    for index, message in enumerate(messages):
        where = f"{field}.{index}"
        if not isinstance(message, dict):
            raise InputFileError("a message must be an object with 'role' and 'content'", path=path, line=line,
                                 field=where)
        yield where, message


def _user_messages(messages: Any, field: str, path: str, line: int) -> list[tuple[str, str]]:
    texts = []
    for where, message in _message_list(messages, field, path, line):
        role = message.get("role")
        if role not in ROLES:
            raise InputFileError(f"unknown role {role!r} (known: {', '.join(ROLES)})", path=path, line=line,
                                 field=f"{where}.role")
        if role == "user" and (text := _content(message.get("content"), f"{where}.content", path, line)):
            texts.append((f"{where}.content", text))
    if not texts:
        raise InputFileError("no user message with text", path=path, line=line, field=field)
    return texts


def _content(content: Any, field: str, path: str, line: int) -> str:
    """A user message's text: a string, or the text parts of a list of content parts joined by line breaks
    ("" when the list holds only images and the like, which have no text to compare)."""
    if not isinstance(content, list):
        return _text(content, field, path, line)
    parts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InputFileError("a content part must be an object with a 'type'", path=path, line=line,
                                 field=f"{field}.{index}")
        if part["type"] == "text":
            parts.append(_text(part.get("text"), f"{field}.{index}.text", path, line))
    return "\n".join(parts)


def _text(value: Any, field: str, path: str, line: int) -> str:
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise InputFileError(f"must be a string, got {got}", path=path, line=line, field=field)
    if not value.strip():
        raise InputFileError("empty text", path=path, line=line, field=field)
    return value


class ChatRow(NamedTuple):
    """One training chat: the messages before the final assistant turn are the prompt, that turn the completion."""

    line: int
    messages: list[dict[str, str]]


def read_chat_corpus(path: Path) -> list[ChatRow]:
    """Every row of a chat corpus, checked whole; InputFileError naming file, line and field at the first bad one."""
    rows = [ChatRow(line, _chat_messages(row, str(path), line)) for line, row in json_lines(path)]
    if not rows:
        raise InputFileError("empty corpus: no rows", path=str(path))
    return rows


def _chat_messages(row: Any, path: str, line: int) -> list[dict[str, str]]:
    if not isinstance(row, dict):
        raise InputFileError(f"expected a JSON object, got {type(row).__name__}", path=path, line=line)
    if "messages" not in row:
        hint = " (a contrastive pair row: give its file with --contrastive)" if "harmful" in row else ""
        raise InputFileError(f"missing{hint}", path=path, line=line, field="messages")
    checked = [_training_message(message, where, path, line)
               for where, message in _message_list(row["messages"], "messages", path, line)]
    if checked[-1]["role"] != "assistant":
        raise InputFileError("the last message must be the assistant's reply, which is what SFT learns", path=path,
                             line=line, field=f"messages.{len(checked) - 1}.role")
    if not any(message["role"] == "user" for message in checked):
        raise InputFileError("no user message", path=path, line=line, field="messages")
    return checked


def _training_message(message: dict[str, Any], field: str, path: str, line: int) -> dict[str, str]:
    role = message.get("role")
    if role is None:
        raise InputFileError("missing role", path=path, line=line, field=f"{field}.role")
    if role not in TRAINING_ROLES:
        raise InputFileError(f"unknown role {role!r} (known: {', '.join(TRAINING_ROLES)})", path=path, line=line,
                             field=f"{field}.role")
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        raise InputFileError("empty content" if isinstance(content, str) or content is None
                             else "content must be a string", path=path, line=line, field=f"{field}.content")
    return {"role": role, "content": content}
