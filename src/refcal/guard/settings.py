"""The guard's settings: one typed model the CLI fills and the proxy reads. API keys are named here (the
environment variables that hold them), never held."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refcal.targets.openai import DEFAULT_API_KEY_ENV

Mode = Literal["flag", "gate"]
DEFAULT_THRESHOLD = 8.0
DEFAULT_REFUSAL = "I can't help with that request."


class GuardSettings(BaseModel):
    """What `refcal guard` proxies to, how it routes, and where it logs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upstream: str
    """Base URL of the OpenAI-compatible server behind the guard, with its /v1 (`http://host:8000/v1`)."""
    mode: Mode = "flag"
    """`flag` forwards everything and reports the risk; `gate` sends requests at or over `threshold` elsewhere."""
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=10.0)
    """Gate mode: risk (0–10) from which a request is gated."""
    gate_upstream: str | None = None
    """Gate mode: base URL of the second model that answers gated requests; without it they get `refusal_text`."""
    gate_model: str | None = None
    """Gate mode: the `model` field sent to the gate upstream (default: the client's)."""
    refusal_text: str = Field(default=DEFAULT_REFUSAL, min_length=1)
    """Gate mode without a gate upstream: the assistant message of the fixed refusal."""
    log: Path | None = None
    """JSONL file that gets one line per exchange (appended)."""
    keep_text: bool = False
    """Log prompts and answers as sent; by default secrets, e-mails and phone numbers are redacted."""
    api_key_env: str = DEFAULT_API_KEY_ENV
    """Name of the environment variable holding the upstream's key (sent upstream only, when set)."""
    gate_api_key_env: str | None = None
    """Name of the environment variable holding the gate upstream's key (default: `api_key_env`)."""
    timeout_s: float = Field(default=120.0, gt=0.0)
    """Per-request upstream timeout; past it the client gets a 504."""
    max_batch: int = Field(default=32, ge=1)
    """Most requests scored in one embedding pass when several arrive together."""
    allowed_hosts: tuple[str, ...] = ()
    """Host headers the guard answers to, besides none: empty means loopback names only (`*`: any)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser Origins allowed besides the guard's own (`*`: any); a request from another is refused."""
    max_request_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body read; a larger one gets 413 before anything is scored or sent."""
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Largest upstream answer passed on (unstreamed); a larger one becomes a 502."""

    @field_validator("upstream", "gate_upstream")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// base URL, got '{value}'")
        return value.rstrip("/") if value is not None else None
