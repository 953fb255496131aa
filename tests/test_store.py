"""The run database: group commit from the writer thread, and duplicate sends refused."""

import asyncio

import pytest

from refcal.errors import StoreError
from refcal.records import Attempt, Message, RunRecord, Variant, Verdict
from refcal.store.runs import GroupCommitWriter, Store


def attempt(index: int) -> Attempt:
    variant = Variant(id=f"v{index}", item_id=f"v{index}", messages=(Message(role="user", content=f"q{index}"),),
                      expect="refuse", klass="k")
    return Attempt(variant=variant, response="no", verdict=Verdict(label="refusal", score=0.9, lane="markers"))


def make_run(store: Store) -> RunRecord:
    return store.create_run(RunRecord(bench_name="b", bench_digest="sha256:x", items=[], target_spec="t",
                                      fingerprint={}, judge_name="markers", judge_version="1", concurrency=1,
                                      out_dir="."))


def test_concurrent_records_are_all_committed_once(tmp_path):
    store = Store(tmp_path / "db")
    run = make_run(store)
    writer = GroupCommitWriter(store.path)

    async def go():
        await asyncio.gather(*(writer.record_async(run.run_id, attempt(index), cache_key=f"key{index}")
                               for index in range(300)))
    asyncio.run(go())
    writer.close()
    assert store.count_attempts(run.run_id) == 300
    assert store.cached("key7").text == "no"


def test_a_duplicate_fails_alone(tmp_path):
    store = Store(tmp_path / "db")
    run = make_run(store)
    store.record(run.run_id, attempt(1))
    writer = GroupCommitWriter(store.path)

    async def go():
        return await asyncio.gather(*(writer.record_async(run.run_id, attempt(index)) for index in range(5)),
                                    return_exceptions=True)
    outcomes = asyncio.run(go())
    writer.close()
    assert [isinstance(outcome, StoreError) for outcome in outcomes] == [False, True, False, False, False]
    assert store.count_attempts(run.run_id) == 5


def test_unknown_run_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="no run"):
        Store(tmp_path / "db").get_run("nope")
