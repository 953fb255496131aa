"""Redaction of personal data and secrets in text that refcal writes from real traffic (logs swept by
watch, exchanges logged by the guard, scripts grounded in chat logs).

Redaction is on by default wherever production text is stored or shown; the raw text is kept only when
the user asks (`--keep-text`). The patterns over-redact rather than under-redact: a digit run that looks
like a phone number is replaced even if it was an order number.

Held secrets are another matter: a value refcal itself holds (an API key read from the variable named by
`--api-key-env`) is registered with `hold_secret` and scrubbed by `scrub_secrets` from every text refcal
keeps (responses, error messages, stored fields), in its raw, `Bearer KEY`, URL-encoded and base64 (HTTP
Basic `user:KEY`) forms, whatever the server echoes back. That scrubbing is always on.
"""

from __future__ import annotations

import base64
import re
import string
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

_SECRET_PATTERNS: tuple[tuple[str, str], ...] = (
    # key=value and "key": "value" forms first, so the value is replaced whatever its shape.
    (r"(?i)((?:api[_-]?key|secret|password|passwd|pwd|token|auth)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{4,}",
     r"\1[secret]"),
    (r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", r"\1[secret]"),
    (r"\b(?:sk|pk|rk)-(?:[A-Za-z0-9_-]+-)?[A-Za-z0-9_-]{16,}\b", "[secret]"),
    (r"\bhf_[A-Za-z0-9]{20,}\b", "[secret]"),
    (r"\bgh[pousr]_[A-Za-z0-9]{20,}\b", "[secret]"),
    (r"\bxox[abpors]-[A-Za-z0-9-]{10,}\b", "[secret]"),
    (r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", "[secret]"),
    (r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", "[secret]"),
    (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", "[secret]"),
)
SECRETS = tuple((re.compile(pattern), replacement) for pattern, replacement in _SECRET_PATTERNS)
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
PHONE = re.compile(r"\+?\d[\d ()-]{7,}\d")


def redact(text: str) -> str:
    """`text` with secrets, e-mail addresses and phone-like numbers replaced by `[secret]`, `[email]`, `[phone]`."""
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return PHONE.sub("[phone]", EMAIL.sub("[email]", text))


SCRUBBED = "[secret]"
"""What a held secret is replaced by."""
MIN_SECRET_CHARS = 4
"""Shorter values are not scrubbed: replacing every `abc` would mangle ordinary text and hide nothing."""
_MIN_BASE64_CHARS = 8

_Forms = tuple[tuple[str, ...], tuple[tuple[str, frozenset[str]], ...]]
"""Literal spellings of a secret, and (base64 core, base64 alphabet) pairs."""
_held: dict[str, _Forms] = {}
_held_lock = threading.Lock()


def hold_secret(value: str | None) -> None:
    """Register a secret refcal holds, so `scrub_secrets` removes it (and its encoded forms) from now on."""
    if not value or len(value) < MIN_SECRET_CHARS:
        return
    with _held_lock:
        if value not in _held:
            _held[value] = _forms(value)


def held_secrets() -> tuple[str, ...]:
    """The secrets registered with `hold_secret`, in no particular order."""
    with _held_lock:
        return tuple(_held)


def scrub_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` without any held secret (or the given `secrets`): raw, URL-encoded, JSON-escaped, or inside a
    base64 run (the `Basic` form of `user:KEY`, whatever the user), each replaced by `[secret]`."""
    if not text:
        return text
    if secrets is None:
        with _held_lock:
            forms = list(_held.values())
    else:
        forms = [_forms(value) for value in secrets if value and len(value) >= MIN_SECRET_CHARS]
    for literals, patterns in forms:
        for literal in literals:
            if literal in text:
                text = text.replace(literal, SCRUBBED)
        for core, alphabet in patterns:
            if core in text:
                text = _scrub_runs(text, core, alphabet)
    return text


def _scrub_runs(text: str, core: str, alphabet: frozenset[str]) -> str:
    """`text` with every run of `alphabet` characters (and its `=` padding) that holds `core` replaced; linear,
    unlike a regex that would scan every long run from every start."""
    parts: list[str] = []
    done = 0
    found = text.find(core)
    while found >= 0:
        start, end = found, found + len(core)
        while start > done and text[start - 1] in alphabet:
            start -= 1
        while end < len(text) and text[end] in alphabet:
            end += 1
        for _ in range(2):
            if end < len(text) and text[end] == "=":
                end += 1
        parts += [text[done:start], SCRUBBED]
        done = end
        found = text.find(core, done)
    return "".join([*parts, text[done:]])


def scrub_json(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with `scrub_secrets` applied to every string in it,
    keys included."""
    if isinstance(value, str):
        return scrub_secrets(value, secrets)
    if isinstance(value, dict):
        return {scrub_json(key, secrets): scrub_json(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(item, secrets) for item in value]
    return value


def _forms(value: str) -> _Forms:
    """The literal spellings of `value` to replace, longest first, and the cores of its base64 spellings."""
    literals = {value, quote(value, safe=""), quote(value, safe="/:"), value.replace("/", "\\/")}
    raw = value.encode()
    patterns = []
    for encode, extra in ((base64.b64encode, "+/"), (base64.urlsafe_b64encode, "-_")):
        alphabet = frozenset(string.ascii_letters + string.digits + extra)
        for shift in range(3):  # the key's offset in the encoded bytes (len("user:") % 3) decides its spelling
            encoded = encode(b"\0" * shift + raw).decode()
            first, last = (1 if shift else 0), (shift + len(raw)) // 3  # whole 3-byte groups of key bytes only
            inner = encoded[4 * first:4 * last]
            if len(inner) >= _MIN_BASE64_CHARS:
                patterns.append((inner, alphabet))
    return tuple(sorted(literals, key=len, reverse=True)), tuple(patterns)
