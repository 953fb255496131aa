"""Reading a client's chat request: checked enough to score and route it, otherwise passed on untouched.

Bad requests are refused with the field that is wrong (`messages`, `messages[2].content`, `stream`), in the
OpenAI error shape, before anything is scored or sent upstream."""

from __future__ import annotations

import json
from typing import Any


class BadRequest(Exception):
    """A request the guard cannot forward; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def read_chat_request(body: bytes) -> dict[str, Any]:
    """The parsed request, or BadRequest naming the field that is missing or malformed."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"the request body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise BadRequest("the request body must be a JSON object")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required: a non-empty list of chat messages", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{index}] must be an object with a string 'role'", f"messages[{index}].role")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise BadRequest(f"messages[{index}].content must be a string or a list of parts",
                             f"messages[{index}].content")
    if not isinstance(request.get("stream", False), bool):
        raise BadRequest("'stream' must be true or false", "stream")
    return request


def content_text(content: object) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def last_user_text(request: dict[str, Any]) -> str:
    """What the risk is scored on: the last user message (the last message of any role when none is a user's)."""
    messages = request["messages"]
    users = [message for message in messages if message.get("role") == "user"]
    return content_text((users or messages)[-1].get("content"))
