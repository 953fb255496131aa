"""The upstream's key never leaves the guard except in the Authorization header it sends upstream.

Real providers echo a wrong key in their 4xx bodies ("Incorrect API key provided: sk-…"), and a hostile or
broken upstream can put it anywhere: a body, a header, a chunk of a stream. The guard registers its keys with
`refcal.redact.hold_secret`, and what it passes to a client or writes to its log goes through
`scrub_secrets` (raw, URL-quoted, JSON-escaped and base64/Basic forms). A stream is scrubbed line by line: no
form of a key spans a newline, and an SSE event ends with one, so each event still reaches the client at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from refcal.redact import held_secrets, scrub_secrets

MAX_HELD_BYTES = 1 << 20
"""A stream that sends this much without a newline is passed on anyway (scrubbed as far as it goes), so a
hostile upstream cannot make the guard buffer without bound."""


def scrub_bytes(data: bytes) -> bytes:
    """`data` with every held secret replaced; any bytes (not only UTF-8) round-trip unchanged otherwise."""
    if not held_secrets():
        return data
    text = data.decode("utf-8", errors="surrogateescape")
    clean = scrub_secrets(text)
    return data if clean == text else clean.encode("utf-8", errors="surrogateescape")


def scrub_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with a secret in their value are dropped, not rewritten: a mangled header is worse than none."""
    return {name: value for name, value in headers.items() if scrub_secrets(value) == value}


class StreamScrubber:
    """Scrubs a byte stream up to its last newline; the rest waits for the next chunk (or the end)."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.held + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < MAX_HELD_BYTES:
            self.held = data
            return b""
        cut = cut or len(data)
        self.held = data[cut:]
        return scrub_bytes(data[:cut])

    def finish(self) -> bytes:
        data, self.held = self.held, b""
        return scrub_bytes(data)
