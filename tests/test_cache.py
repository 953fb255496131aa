"""The response cache is keyed by target fingerprint and request."""

from helpers import drill, make_bench, stub_target

from refcal.targets import GenerationParams
from refcal.testing import Reply, StubServer


def test_cache_serves_identical_requests_to_an_identical_target(tmp_path):
    bench = make_bench(6)
    with StubServer(lambda request, number: Reply(text=f"answer {number}")) as stub:
        first, _ = drill(bench, stub_target(stub.base_url), tmp_path / "db", use_cache=True)
        second, store = drill(bench, stub_target(stub.base_url), tmp_path / "db", use_cache=True)
        assert stub.chat_requests == 6
        assert second.counts.cached == 6
        responses = {attempt.variant.id: attempt.response for attempt in store.attempts(first.run_id)}
        assert all(responses[attempt.variant.id] == attempt.response for attempt in store.attempts(second.run_id))

        drill(bench, stub_target(stub.base_url, params=GenerationParams(max_tokens=9)), tmp_path / "db",
              use_cache=True)
        assert stub.chat_requests == 12, "other generation parameters are another fingerprint"

        fresh, _ = drill(bench, stub_target(stub.base_url), tmp_path / "db", use_cache=False)
        assert stub.chat_requests == 18 and fresh.counts.cached == 0


def test_errors_are_not_cached(tmp_path):
    bench = make_bench(2)
    with StubServer(lambda request, number: Reply(status=500 if number <= 8 else 200)) as stub:
        failed, _ = drill(bench, stub_target(stub.base_url), tmp_path / "db", use_cache=True)
        assert failed.counts.errors == 2
        healed, _ = drill(bench, stub_target(stub.base_url), tmp_path / "db", use_cache=True)
    assert healed.counts.errors == 0 and healed.counts.cached == 0
