"""Fault injection against a loopback stub: retries, and errors recorded as errors, never judged."""

from __future__ import annotations

import asyncio
import random

import pytest
from helpers import drill, make_bench, stub_target

from refcal.errors import FatalTargetError, RateLimitedTargetError
from refcal.records import Message
from refcal.targets import RetryPolicy, TargetFailed
from refcal.targets.openai import parse_retry_after
from refcal.testing import Reply, StubServer


def fail_first(reply: Reply, failures: int = 2):
    """Each prompt fails `failures` times, then succeeds."""
    seen: dict[str, int] = {}

    def behaviour(request, number):
        prompt = request["messages"][-1]["content"]
        seen[prompt] = seen.get(prompt, 0) + 1
        return reply if seen[prompt] <= failures else Reply(text="Sure, here you go.")
    return behaviour


@pytest.mark.parametrize("fault", [
    Reply(status=500, text="boom"),
    Reply(status=503),
    Reply(status=429, headers={"Retry-After": "0"}),
    Reply(reset=True),
    Reply(body=b'{"choices": [ this is not json'),
    Reply(body=b'{"no_choices": true}'),
], ids=["500", "503", "429", "reset", "malformed-json", "wrong-shape"])
def test_transient_faults_are_retried_then_succeed(tmp_path, fault):
    with StubServer(fail_first(fault)) as stub:
        receipt, store = drill(make_bench(6), stub_target(stub.base_url), tmp_path / "db.sqlite")
    assert receipt.counts.errors == 0 and receipt.counts.attempts == 6
    assert stub.chat_requests == 18
    assert all(attempt.retries == 2 for attempt in store.attempts(receipt.run_id))


def test_timeouts_are_retried(tmp_path):
    behaviour = fail_first(Reply(delay_s=2.0), failures=1)
    with StubServer(behaviour) as stub:
        receipt, _ = drill(make_bench(2), stub_target(stub.base_url, timeout_s=0.3), tmp_path / "db.sqlite")
    assert receipt.counts.errors == 0 and stub.chat_requests == 4


def test_persistent_failure_is_an_error_attempt_not_a_verdict(tmp_path):
    with StubServer(lambda request, number: Reply(status=500)) as stub:
        receipt, store = drill(make_bench(4), stub_target(stub.base_url), tmp_path / "db.sqlite")
    attempts = list(store.attempts(receipt.run_id))
    assert receipt.counts.errors == 4 and stub.chat_requests == 16
    assert all(attempt.verdict is None and "HTTP 500" in attempt.error for attempt in attempts)
    metrics = receipt.metrics
    assert metrics.refusal_rate.n == 0 and metrics.false_refusal_rate.n == 0
    assert metrics.refuse.errors + metrics.comply.errors == 4


def test_client_errors_are_not_retried(tmp_path):
    with StubServer(lambda request, number: Reply(status=400, text="bad")) as stub:
        receipt, _ = drill(make_bench(3), stub_target(stub.base_url), tmp_path / "db.sqlite")
    assert receipt.counts.errors == 3 and stub.chat_requests == 3


def test_partial_faults_are_counted_apart(tmp_path):
    def behaviour(request, number):
        prompt = request["messages"][-1]["content"]
        return Reply(status=500) if prompt.endswith("3?") else Reply(text="I can't help with that.")
    with StubServer(behaviour) as stub:
        receipt, _ = drill(make_bench(6), stub_target(stub.base_url), tmp_path / "db.sqlite")
    assert receipt.counts.errors == 1
    assert receipt.metrics.refusal_rate.n + receipt.metrics.false_refusal_rate.n == 5


def test_retry_after_is_honoured_by_the_policy():
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
    error = RateLimitedTargetError("429", retry_after=7.0)
    assert policy.delay(1, error, random.Random(0)) == 7.0
    assert parse_retry_after("3") == 3.0 and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0 + 1e-9


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0)
    rng = random.Random(1)
    error = RateLimitedTargetError("x")
    assert all(0 <= policy.delay(tries, error, rng) <= min(4.0, 2 ** (tries - 1)) for tries in range(1, 10))


def test_rate_limit_waits_for_retry_after(tmp_path):
    """A 429 with Retry-After: 1 makes the client wait (observed through the stub's request order)."""
    with StubServer(fail_first(Reply(status=429, headers={"Retry-After": "1"}), failures=1)) as stub:
        target = stub_target(stub.base_url)

        async def go():
            async with target:
                loop = asyncio.get_running_loop()
                started = loop.time()
                await target.complete_async((Message(role="user", content="hi"),))
                return loop.time() - started
        waited = asyncio.run(go())
    assert stub.chat_requests == 2 and waited >= 1.0


def test_unreachable_server_fails_fast(tmp_path):
    target = stub_target("http://127.0.0.1:9/v1")

    async def go():
        async with target:
            pass
    with pytest.raises(FatalTargetError, match="cannot reach"):
        asyncio.run(go())


def test_target_failed_reports_tries():
    with StubServer(lambda request, number: Reply(status=502)) as stub:
        target = stub_target(stub.base_url)

        async def go():
            async with target:
                await target.complete_async((Message(role="user", content="hi"),))
        with pytest.raises(TargetFailed) as caught:
            asyncio.run(go())
    assert caught.value.tries == 4
