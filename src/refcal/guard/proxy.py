"""The guard as an ASGI app: an OpenAI-compatible proxy that scores each chat request's risk, forwards or
gates it, streams answers through chunk by chunk, and logs each exchange.

`make_app(settings)` builds it; `refcal guard` serves it with uvicorn. Scoring runs on a worker thread (see
scoring.py), so the event loop keeps relaying other requests while a batch is embedded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from refcal.clock import utc_now
from refcal.guard.chat import BadRequest, last_user_text, read_chat_request
from refcal.guard.exchange_log import ExchangeLog, ExchangeRecord, Route
from refcal.guard.scoring import RiskBatcher
from refcal.guard.secrets import StreamScrubber, scrub_bytes, scrub_headers
from refcal.guard.settings import GuardSettings
from refcal.guard.sse import CompletionAssembler, completion_events, error_event, fixed_completion
from refcal.guard.upstream import Upstream, UpstreamFailure, error_body
from refcal.judges.risk import RequestRisk, RiskScore
from refcal.origin import host_allowed, origin_allowed

RISK_HEADER = "x-refcal-risk"
ROUTE_HEADER = "x-refcal-route"
CHAT_PATH = "/chat/completions"
NOT_COPIED = frozenset({"content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive",
                        "date", "server"})
"""Headers the guard does not copy from the upstream's answer: it re-frames and decodes the body itself, and
its own server adds the date and server lines."""


class _Exchange:
    """What one request carries through the guard until its log line is written."""

    def __init__(self, chat: dict[str, Any], arrived: str, started: float) -> None:
        self.chat = chat
        self.arrived = arrived
        self.started = started
        self.risk: dict[str, Any] = {}
        self.route: Route = "upstream"
        self.headers: dict[str, str] = {}


class Guard:
    """The app's state: settings, upstream clients, the risk batcher and the log."""

    def __init__(self, settings: GuardSettings, risk: RequestRisk | None = None) -> None:
        self.settings = settings
        self.risk = risk
        self.upstream = Upstream(settings.upstream, settings.api_key_env, settings.timeout_s)
        self.gate = (Upstream(settings.gate_upstream, settings.gate_api_key_env or settings.api_key_env,
                              settings.timeout_s, role="gate upstream") if settings.gate_upstream else None)
        self.log: ExchangeLog | None = None
        self.batcher: RiskBatcher | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        if self.risk is None:
            self.risk = await asyncio.to_thread(RequestRisk.default)
        self.batcher = RiskBatcher(self.risk, self.settings.max_batch)
        self.batcher.start()
        for upstream in (self.upstream, self.gate):
            if upstream is not None:
                upstream.start()
        if self.settings.log is not None:
            self.log = ExchangeLog(self.settings.log, self.settings.keep_text)
        try:
            yield
        finally:
            await self.batcher.stop_async()
            for upstream in (self.upstream, self.gate):
                if upstream is not None:
                    await upstream.close_async()
            if self.log is not None:
                self.log.close()

    def admission(self, request: Request) -> Response | None:
        """A refusal for a request from where the guard must not answer, or None to serve it."""
        host = request.headers.get("host", "")
        if not host_allowed(host, self.settings.allowed_hosts):
            return JSONResponse(error_body("this guard does not answer to that Host header (see --allow-host)",
                                           "permission_error"), 403)
        if not origin_allowed(request.headers.get("origin"), host, self.settings.allowed_origins):
            return JSONResponse(error_body("cross-site request refused (see --allow-origin)", "permission_error"),
                                403)
        if request.method == "POST":
            # text/plain and form bodies are what a web page may send without a CORS preflight: accepting them
            # would let any site the user visits spend the operator's key.
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return JSONResponse(error_body(f"the request must be application/json, not '{kind or 'none'}'",
                                               "invalid_request_error"), 415)
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.settings.max_request_bytes:
                return self._too_large()
        return None

    def _too_large(self) -> Response:
        return JSONResponse(error_body(f"the request is over {self.settings.max_request_bytes} bytes",
                                       "invalid_request_error"), 413)

    async def _read_body(self, request: Request) -> bytes | None:
        """The body, or None when it grows past the limit (a chunked request names no length)."""
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > self.settings.max_request_bytes:
                return None
            parts.append(part)
        return b"".join(parts)

    def _passed(self, response: httpx.Response, body: bytes) -> Response:
        """The upstream's answer as the client gets it: keys scrubbed from body and headers."""
        return Response(scrub_bytes(body), response.status_code, scrub_headers(_passed_headers(response)))

    async def models(self, request: Request) -> Response:
        """GET /v1/models, passed through from the upstream."""
        refused = self.admission(request)
        if refused is not None:
            return refused
        try:
            response = await self.upstream.get_async("/models")
        except UpstreamFailure as failure:
            return JSONResponse(failure.body, failure.status)
        return self._passed(response, response.content)

    async def chat_completions(self, request: Request) -> Response:
        """POST /v1/chat/completions: check, score, route, answer, log."""
        started, arrived = time.perf_counter(), utc_now()
        refused = self.admission(request)
        if refused is not None:
            return refused
        body = await self._read_body(request)
        if body is None:
            return self._too_large()
        try:
            chat = await asyncio.to_thread(read_chat_request, body)
        except BadRequest as error:
            return JSONResponse(error_body(error.message, "invalid_request_error", error.param), 400)
        exchange = _Exchange(chat, arrived, started)
        # Flag mode routes nothing on the score, so the upstream call starts at once and the score is awaited
        # only for the response header and the log: scoring costs no latency unless it is the slower of the two.
        scoring = asyncio.create_task(self._score(exchange))
        if self.settings.mode == "gate":
            await scoring
        if exchange.route == "refused":
            return self._refuse(exchange)
        upstream = self.gate if exchange.route == "gate" and self.gate is not None else self.upstream
        outgoing = chat
        if exchange.route == "gate" and self.settings.gate_model:
            outgoing = {**chat, "model": self.settings.gate_model}
        if chat.get("stream"):
            return await self._stream(exchange, upstream, outgoing, scoring)
        return await self._forward(exchange, upstream, outgoing, scoring)

    async def _score(self, exchange: _Exchange) -> None:
        """Score and choose the route. A scorer failure never blocks a request: it goes upstream, unscored."""
        assert self.batcher is not None and self.risk is not None
        try:
            score: RiskScore = await self.batcher.score_async(scored_text(last_user_text(exchange.chat)))
        except Exception as error:  # a broken scorer is logged with the exchange, never fatal to traffic
            exchange.risk = {"error": f"{type(error).__name__}: {error}", "version": self.risk.version}
            exchange.headers = {RISK_HEADER: "error", ROUTE_HEADER: "upstream"}
            return
        exchange.risk = {**score.model_dump(), "version": self.risk.version, "mode": self.settings.mode,
                         "threshold": self.settings.threshold}
        if self.settings.mode == "gate" and score.risk >= self.settings.threshold:
            exchange.route = "gate" if self.gate is not None else "refused"
        exchange.headers = {RISK_HEADER: f"{score.risk:.1f}", ROUTE_HEADER: exchange.route}

    def _refuse(self, exchange: _Exchange) -> Response:
        completion = fixed_completion(self.settings.refusal_text, str(exchange.chat.get("model") or "refcal-guard"))
        self._write_now(exchange, completion, 200)
        if exchange.chat.get("stream"):
            return Response(completion_events(completion), 200, exchange.headers, media_type="text/event-stream")
        return JSONResponse(completion, 200, exchange.headers)

    async def _forward(self, exchange: _Exchange, upstream: Upstream, outgoing: dict[str, Any],
                       scoring: asyncio.Task[None]) -> Response:
        try:
            response = await upstream.post_async(CHAT_PATH, outgoing)
        except UpstreamFailure as failure:
            await scoring
            await self._write(exchange, None, failure.status, failure.body)
            return JSONResponse(failure.body, failure.status, exchange.headers)
        await scoring
        if len(response.content) > self.settings.max_response_bytes:
            failure = upstream.too_large(len(response.content), self.settings.max_response_bytes)
            await self._write(exchange, None, failure.status, failure.body)
            return JSONResponse(failure.body, failure.status, exchange.headers)
        passed = self._passed(response, response.content)
        await self._write(exchange, _json_or_raw(passed.body), response.status_code)
        passed.headers.update(exchange.headers)
        return passed

    async def _stream(self, exchange: _Exchange, upstream: Upstream, outgoing: dict[str, Any],
                      scoring: asyncio.Task[None]) -> Response:
        try:
            response = await upstream.open_stream_async(CHAT_PATH, outgoing)
        except UpstreamFailure as failure:
            await scoring
            await self._write(exchange, None, failure.status, failure.body)
            return JSONResponse(failure.body, failure.status, exchange.headers)
        await scoring  # the header goes out with the status line, before the first chunk
        if response.status_code >= 400 or "text/event-stream" not in response.headers.get("content-type", ""):
            body = await response.aread()  # a 4xx, or a server that ignored `stream`: one body, passed on
            await response.aclose()
            passed = self._passed(response, body)
            await self._write(exchange, _json_or_raw(passed.body), response.status_code)
            passed.headers.update(exchange.headers)
            return passed
        return StreamingResponse(self._relay(exchange, upstream, response), response.status_code,
                                 {**scrub_headers(_passed_headers(response)), **exchange.headers},
                                 media_type="text/event-stream")

    async def _relay(self, exchange: _Exchange, upstream: Upstream, response: httpx.Response) -> AsyncIterator[bytes]:
        """Pass each chunk on as it arrives; log the assembled completion when the stream ends or breaks."""
        assembler = CompletionAssembler()
        scrubber = StreamScrubber()
        error: dict[str, Any] | None = None
        try:
            async for data in response.aiter_bytes():
                clean = scrubber.feed(data)
                if clean:
                    assembler.feed(clean)
                    yield clean
            rest = scrubber.finish()
            if rest:
                assembler.feed(rest)
                yield rest
        except httpx.HTTPError as failure:  # the status line is sent: the error goes in the stream
            error = upstream.failure(failure).body
            yield error_event(error)
        finally:
            await response.aclose()
            if error is None and assembler.error is not None:
                error = {"error": assembler.error}
            await self._write(exchange, assembler.completion(), response.status_code, error)

    async def _write(self, exchange: _Exchange, response: dict[str, Any] | None, status: int,
                     error: dict[str, Any] | None = None) -> None:
        """Redaction and the write run on a worker thread: a large exchange never stalls the event loop."""
        if self.log is not None:
            await asyncio.to_thread(self._write_now, exchange, response, status, error)

    def _write_now(self, exchange: _Exchange, response: dict[str, Any] | None, status: int,
                   error: dict[str, Any] | None = None) -> None:
        if self.log is None:
            return
        self.log.write(ExchangeRecord(time=exchange.arrived, request=exchange.chat, response=response,
                                      risk=exchange.risk, route=exchange.route, status=status,
                                      latency_ms=round((time.perf_counter() - exchange.started) * 1000, 2),
                                      error=error))


SCORED_CHARS = 4000


def scored_text(text: str) -> str:
    """What the risk scorer reads: the embedding sees 256 tokens, but its tokenizer would read a multi-megabyte
    message whole, so a long one is cut to its opening and its end (where a request usually states itself)."""
    if len(text) <= 2 * SCORED_CHARS:
        return text
    return text[:SCORED_CHARS] + "\n…\n" + text[-SCORED_CHARS:]


def _passed_headers(response: httpx.Response) -> dict[str, str]:
    return {key: value for key, value in response.headers.items() if key.lower() not in NOT_COPIED}


def _json_or_raw(body: bytes) -> dict[str, Any]:
    """The upstream's body as logged: its JSON object, or the raw text when it sent something else."""
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"raw": body.decode("utf-8", errors="replace")}
    return parsed if isinstance(parsed, dict) else {"raw": parsed}


def make_app(settings: GuardSettings, risk: RequestRisk | None = None) -> FastAPI:
    """The guard app. `risk` defaults to RequestRisk.default(), built at start-up (it embeds the benches)."""
    guard = Guard(settings, risk)
    app = FastAPI(title="refcal guard", lifespan=guard.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.guard = guard
    app.add_api_route("/v1/chat/completions", guard.chat_completions, methods=["POST"])
    app.add_api_route("/v1/models", guard.models, methods=["GET"])
    return app
