"""Timestamps as every record writes them: ISO 8601, UTC, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
