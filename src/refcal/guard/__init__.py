"""The guard: an OpenAI-compatible proxy that scores each request's risk, flags or gates it, passes streams
through and logs every exchange (redacted) for the watch sweep."""

from __future__ import annotations

from refcal.guard.exchange_log import ExchangeLog, ExchangeRecord, redact_text_fields
from refcal.guard.proxy import RISK_HEADER, ROUTE_HEADER, Guard, make_app
from refcal.guard.settings import DEFAULT_REFUSAL, DEFAULT_THRESHOLD, GuardSettings, Mode

__all__ = ["DEFAULT_REFUSAL", "DEFAULT_THRESHOLD", "RISK_HEADER", "ROUTE_HEADER", "ExchangeLog", "ExchangeRecord",
           "Guard", "GuardSettings", "Mode", "make_app", "redact_text_fields"]
