"""The servers behind the guard: one httpx client each, the key read from the environment and sent upstream only
(whatever the upstream echoes of it is scrubbed: guard.secrets). Transport failures and 5xx answers become an
OpenAI-style error (502, or 504 on a timeout) that names the upstream by its redacted URL and never carries the
key or the upstream's body."""

from __future__ import annotations

import os
from typing import Any

import httpx

from refcal.redact import hold_secret, redact, scrub_secrets
from refcal.targets.openai import redact_url

CONNECT_TIMEOUT_S = 10.0


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape clients already parse."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class UpstreamFailure(Exception):
    """The upstream could not answer; `status` and `body` are what the client gets."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body


class Upstream:
    """An OpenAI-compatible base URL (with its /v1) and the client that talks to it."""

    def __init__(self, base_url: str, api_key_env: str, timeout_s: float, role: str = "upstream") -> None:
        self.base_url = base_url.rstrip("/")
        self.shown = redact_url(self.base_url)
        """How logs and errors name it: no user info, query or fragment."""
        self.role = role
        self.timeout_s = timeout_s
        self.key = os.environ.get(api_key_env) or None
        """Sent upstream only; held (refcal.redact.hold_secret) so it is scrubbed from everything else."""
        hold_secret(self.key)
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers,
            timeout=httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))

    async def close_async(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"the {self.role} client is not started")
        return self._client

    async def post_async(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """The upstream's whole answer; UpstreamFailure on a transport error or a 5xx."""
        try:
            response = await self.client.post(path, json=body)
        except httpx.HTTPError as error:
            raise self.failure(error) from None
        return self._checked(response)

    async def get_async(self, path: str) -> httpx.Response:
        try:
            response = await self.client.get(path)
        except httpx.HTTPError as error:
            raise self.failure(error) from None
        return self._checked(response)

    async def open_stream_async(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """The upstream's answer with its body still to read (the caller closes it); UpstreamFailure as above."""
        request = self.client.build_request("POST", path, json=body)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise self.failure(error) from None
        if response.status_code >= 500:
            await response.aclose()
        return self._checked(response)

    def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            raise UpstreamFailure(502, error_body(f"{self.role} {self.shown} answered HTTP {response.status_code}",
                                                  "upstream_error", code=f"upstream_http_{response.status_code}"))
        return response

    def too_large(self, size: int, limit: int) -> UpstreamFailure:
        return UpstreamFailure(502, error_body(f"{self.role} {self.shown} answered {size} bytes, over the guard's "
                                               f"limit of {limit}", "upstream_error", code="upstream_too_large"))

    def failure(self, error: Exception) -> UpstreamFailure:
        """The client-facing error for a transport failure: 504 on a timeout, 502 otherwise."""
        if isinstance(error, httpx.TimeoutException):
            return UpstreamFailure(504, error_body(
                f"{self.role} {self.shown} timed out ({type(error).__name__}, limit {self.timeout_s:g} s)",
                "upstream_error", code="upstream_timeout"))
        detail = self._scrub(str(error)) or "no detail"
        return UpstreamFailure(502, error_body(f"{self.role} {self.shown} failed: {type(error).__name__}: {detail}",
                                               "upstream_error", code="upstream_unreachable"))

    def _scrub(self, text: str) -> str:
        """Transport messages hold no headers, but a URL with credentials or an echoed key must not pass."""
        return redact(scrub_secrets(text.replace(self.base_url, self.shown)))
