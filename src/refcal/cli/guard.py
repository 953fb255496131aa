"""`refcal guard`: serve the guard proxy with uvicorn. A thin layer: options → GuardSettings → make_app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from refcal.cli.common import console, fail
from refcal.cli.exit_codes import EXIT_INPUT, EXIT_UNAVAILABLE
from refcal.errors import MissingExtraError
from refcal.guard.settings import DEFAULT_REFUSAL, DEFAULT_THRESHOLD, GuardSettings
from refcal.targets.openai import DEFAULT_API_KEY_ENV, redact_url

guard_app = typer.Typer()


def register(parent: typer.Typer) -> None:
    """Add `guard` to the `refcal` app."""
    parent.add_typer(guard_app)


@guard_app.command()
def guard(
    upstream: Annotated[str, typer.Option(help="Base URL of the OpenAI-compatible server to guard, with its /v1.")],
    mode: Annotated[str, typer.Option(help="flag: forward everything, report the risk; gate: route risky "
                                           "requests to --gate-upstream or a fixed refusal.")] = "flag",
    threshold: Annotated[float, typer.Option(help="Gate mode: risk (0–10) from which a request is gated.")]
        = DEFAULT_THRESHOLD,
    gate_upstream: Annotated[str | None, typer.Option(help="Gate mode: base URL of the model that answers gated "
                                                           "requests (default: a fixed refusal).")] = None,
    gate_model: Annotated[str | None, typer.Option(help="Gate mode: model name sent to the gate upstream.")] = None,
    refusal_text: Annotated[str, typer.Option(help="Gate mode without a gate upstream: the refusal returned.")]
        = DEFAULT_REFUSAL,
    log: Annotated[Path | None, typer.Option(help="JSONL file: one line per exchange (OpenAI request/response "
                                                  "shape, read by `refcal watch`).")] = None,
    keep_text: Annotated[bool, typer.Option("--keep-text", help="Log text as sent (default: secrets, e-mails and "
                                                                "phone numbers redacted).")] = False,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8787,
    api_key_env: Annotated[str, typer.Option(help="Name of the env variable holding the upstream's key.")]
        = DEFAULT_API_KEY_ENV,
    gate_api_key_env: Annotated[str | None, typer.Option(help="Name of the env variable holding the gate "
                                                               "upstream's key (default: --api-key-env).")] = None,
    timeout: Annotated[float, typer.Option(help="Upstream timeout per request, seconds (then 504).")] = 120.0,
    allow_host: Annotated[list[str] | None, typer.Option(help="A Host header to answer to besides loopback names "
                                                             "(repeat; `*` for any).")] = None,
    allow_origin: Annotated[list[str] | None, typer.Option(help="A browser Origin to accept besides the guard's "
                                                               "own (repeat; `*` for any).")] = None,
    max_request_bytes: Annotated[int, typer.Option(help="Largest request body (then 413).")] = 8 * 1024 * 1024,
) -> None:
    """Serve an OpenAI-compatible proxy that scores each request's risk (0–10) and flags or gates it."""
    try:
        settings = GuardSettings(upstream=upstream, mode=mode, threshold=threshold, gate_upstream=gate_upstream,
                                 gate_model=gate_model, refusal_text=refusal_text, log=log, keep_text=keep_text,
                                 api_key_env=api_key_env, gate_api_key_env=gate_api_key_env, timeout_s=timeout,
                                 allowed_hosts=tuple(allow_host or ()), allowed_origins=tuple(allow_origin or ()),
                                 max_request_bytes=max_request_bytes)
    except ValidationError as error:
        problems = "; ".join(f"--{'-'.join(str(part) for part in problem['loc']).replace('_', '-')}: "
                             f"{problem['msg']}" for problem in error.errors())
        raise fail(problems, EXIT_INPUT) from None
    if settings.mode == "flag" and (settings.gate_upstream or settings.gate_model):
        raise fail("--gate-upstream and --gate-model only apply with --mode gate", EXIT_INPUT)
    _serve(settings, host, port)


def _serve(settings: GuardSettings, host: str, port: int) -> None:
    import uvicorn

    from refcal.guard.proxy import make_app
    from refcal.judges.embedding import SentenceEmbedder
    from refcal.judges.risk import RequestRisk

    try:
        SentenceEmbedder.check()
        risk = RequestRisk.default()
    except MissingExtraError as error:
        raise fail(f"the guard scores risk with the judges' embedding model: {error}", EXIT_UNAVAILABLE) from None
    gated = ""
    if settings.mode == "gate":
        gated = f", risk ≥ {settings.threshold:g} → " + (redact_url(settings.gate_upstream) if settings.gate_upstream
                                                        else "fixed refusal")
    console.print(f"guard on http://{host}:{port}/v1 → {redact_url(settings.upstream)} ({settings.mode} mode{gated}; "
                  f"risk {risk.version}; log {settings.log or 'off'}"
                  f"{', text kept' if settings.keep_text and settings.log else ''})", highlight=False, markup=False,
                  soft_wrap=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.allowed_hosts:
        console.print(f"note: clients must send a loopback Host header; to serve others, add --allow-host "
                      f"NAME[:{port}]", highlight=False, markup=False, soft_wrap=True)
    uvicorn.run(make_app(settings, risk), host=host, port=port, log_level="warning")
