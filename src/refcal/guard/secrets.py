"""The upstream's key never leaves the guard except in the Authorization header it sends upstream.

Real providers echo a wrong key in their 4xx bodies ("Incorrect API key provided: sk-…"), and a hostile or
broken upstream can put it anywhere: a body, a header, a chunk of a stream. The guard holds the key, so it
replaces every form of it (as is, URL-quoted, in a Basic credential) in whatever it passes to a client or writes
to its log. Streams are scrubbed across chunk boundaries: a chunk's tail that could begin a key waits for the
next chunk."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from urllib.parse import quote

MASK = b"[secret]"


def secret_forms(keys: Iterable[str | None]) -> tuple[bytes, ...]:
    """Every byte form a key can be echoed in, longest first."""
    forms: set[bytes] = set()
    for key in keys:
        if not key:
            continue
        forms.add(key.encode())
        forms.add(quote(key, safe="").encode())
        for user in ("", "user", "api", "apikey"):
            forms.add(base64.b64encode(f"{user}:{key}".encode()))
    return tuple(sorted(forms, key=len, reverse=True))


class Scrubber:
    """Replaces the keys' forms in bytes, text and headers."""

    def __init__(self, keys: Iterable[str | None]) -> None:
        self.forms = secret_forms(keys)
        self.longest = max((len(form) for form in self.forms), default=0)

    def bytes(self, data: bytes) -> bytes:
        for form in self.forms:
            if form in data:
                data = data.replace(form, MASK)
        return data

    def text(self, text: str) -> str:
        return self.bytes(text.encode("utf-8", errors="surrogatepass")).decode("utf-8", errors="replace") \
            if self.forms else text

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers with a key in their value are dropped, not rewritten: a mangled header is worse than none."""
        return {name: value for name, value in headers.items()
                if not any(form.decode() in value for form in self.forms)}

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)


class StreamScrubber:
    """Scrubs a byte stream chunk by chunk; a key split across two chunks is still found."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.held = b""

    def feed(self, chunk: bytes) -> bytes:
        """What can be passed on now: all but a tail that could begin a key (usually nothing is held, so
        an event that ends a chunk reaches the client at once)."""
        data = self.scrubber.bytes(self.held + chunk)
        keep = 0
        for size in range(min(self.scrubber.longest - 1, len(data)), 0, -1):
            tail = data[-size:]
            if any(form.startswith(tail) for form in self.scrubber.forms):
                keep = size
                break
        self.held = data[len(data) - keep:] if keep else b""
        return data[:len(data) - keep]

    def finish(self) -> bytes:
        data, self.held = self.scrubber.bytes(self.held), b""
        return data
