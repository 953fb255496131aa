"""Host and Origin rules for the servers refcal runs on a user's machine (the review page, the guard).

A local server answers only to the Host names it was bound for — loopback by default — so that a web page
the user visits cannot reach it through DNS rebinding; and a browser request that names another Origin is
refused, so that a page cannot spend what the server holds (labels, an API key) with the user's browser.
"""

from __future__ import annotations

from collections.abc import Collection

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY_HOST = "*"
"""In an allow-list: answer to any Host (or Origin)."""


def hostname(host: str) -> str:
    """The name part of a Host header (`[::1]:8765` → `::1`)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower()


def host_allowed(host: str, allowed_hosts: Collection[str] | None) -> bool:
    """Loopback names only when there is no allow-list; else a listed `name[:port]` (or `*`)."""
    if not allowed_hosts:
        return hostname(host) in LOOPBACK
    return ANY_HOST in allowed_hosts or host.lower() in allowed_hosts or hostname(host) in allowed_hosts


def origin_allowed(origin: str | None, host: str, allowed_origins: Collection[str] = ()) -> bool:
    """No Origin (not a browser, or a same-origin GET) passes; else it must be this server's own, or listed."""
    if origin is None:
        return True
    origin = origin.lower().rstrip("/")
    return (origin in (f"http://{host}".lower(), f"https://{host}".lower())
            or ANY_HOST in allowed_origins or origin in {allowed.lower().rstrip("/") for allowed in allowed_origins})
