"""A loopback OpenAI-shaped stub server for fault injection and harness-overhead benchmarks only.

It is never evidence that a judge or a model works: it answers with canned text. It speaks just
enough HTTP/1.1 (keep-alive, Content-Length) over asyncio streams to cost little CPU, so a benchmark
measures refcal rather than the stub. It runs in its own thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """What the stub does with one chat request."""

    status: int = 200
    text: str = "Sure, here is an answer."
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    """Raw body instead of a chat completion (for malformed JSON)."""
    reset: bool = False
    """Close the connection without answering."""
    trickle_s: float = 0.0
    """Send the body one byte at a time, this many seconds apart (headers first, at once)."""
    trickle_for_s: float | None = None
    """With `trickle_s`: trickle this long, then send the rest of the body at once (None: all of it)."""


Behaviour = Callable[[dict[str, Any], int], Reply]
"""(request JSON, 1-based request number) → reply."""


def fixed_latency(delay_s: float, text: str = "Sure, here is an answer.") -> Behaviour:
    return lambda request, number: Reply(text=text, delay_s=delay_s)


def chat_body(text: str) -> bytes:
    return json.dumps({"object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5}}).encode()


class StubServer:
    """`with StubServer(behaviour) as stub:` then point an OpenAI target at `stub.base_url`."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[dict[str, Any]] = []
        self.chat_requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> StubServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {key.lower(): value.strip() for key, _, value in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._respond(method, path, body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _respond(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if method == "GET":
            self._write(writer, 200, b'{"object":"list","data":[{"id":"stub"}]}', {})
            return True
        request = json.loads(body or b"{}")
        self.chat_requests += 1
        self.requests.append(request)
        reply = self.behaviour(request, self.chat_requests)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.reset:
            writer.transport.abort()
            return False
        body = reply.body if reply.body is not None else chat_body(reply.text)
        if reply.trickle_s:
            await self._trickle(writer, reply, body)
            return True
        self._write(writer, reply.status, body, reply.headers)
        await writer.drain()
        return True

    async def _trickle(self, writer: asyncio.StreamWriter, reply: Reply, body: bytes) -> None:
        self._write(writer, reply.status, body, reply.headers, head_only=True)
        loop = asyncio.get_running_loop()
        stop = loop.time() + reply.trickle_for_s if reply.trickle_for_s is not None else None
        sent = 0
        while sent < len(body) and (stop is None or loop.time() < stop):
            writer.write(body[sent:sent + 1])
            await writer.drain()
            sent += 1
            await asyncio.sleep(reply.trickle_s)
        writer.write(body[sent:])
        await writer.drain()

    @staticmethod
    def _write(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str],
               head_only: bool = False) -> None:
        extra = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        head = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"{extra}\r\n").encode()
        writer.write(head if head_only else head + body)
