"""Redaction of personal data and secrets in text that refcal writes from real traffic (logs swept by
watch, exchanges logged by the guard, scripts grounded in chat logs).

Redaction is on by default wherever production text is stored or shown; the raw text is kept only when
the user asks (`--keep-text`). The patterns over-redact rather than under-redact: a digit run that looks
like a phone number is replaced even if it was an order number.
"""

from __future__ import annotations

import re

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
