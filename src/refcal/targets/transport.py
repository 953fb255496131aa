"""An httpx transport that spreads requests over several small connection pools.

httpcore's pool does work quadratic in its number of connections on every request and release; at 64
connections that costs ~10 ms of CPU per request, enough to cap a drill at a seventh of what the server
could take (benchmarks/harness_overhead.py measures it). Pools of at most eight keep that cost flat.
"""

from __future__ import annotations

import math

import httpx

CONNECTIONS_PER_POOL = 8


class ShardedTransport(httpx.AsyncBaseTransport):
    """`connections` keep-alive connections in pools of at most CONNECTIONS_PER_POOL, least busy first."""

    def __init__(self, connections: int) -> None:
        shards = max(1, math.ceil(connections / CONNECTIONS_PER_POOL))
        per_pool = math.ceil(connections / shards)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards)]
        self._busy = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            return await self._pools[index].handle_async_request(request)
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()
