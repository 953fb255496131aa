"""Refusals sampled from live traffic as a run the review page can show (`refcal review RUN`).

The sweep pools refused exchanges per stratum (refusal class × segment); every third pass this module draws
equal shares of the strata, round-robin, up to the review size, and writes them as one run: a synthetic bench
of one item per exchange (its request's chat, `klass` = the refusal class, `expect` as refcal.watch.sweep
explains), one attempt per item holding the logged response and the sweep's verdict. Texts arrive redacted
unless the sweep keeps text. The run and its attempts are written in one transaction under an id derived from
the sweep's name and pass number, so a pass repeated after a crash finds the run written and adds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from refcal.bench.items import Item
from refcal.bench.loaders import finish_bench
from refcal.errors import StoreError
from refcal.records import Attempt, Message, RunRecord, Variant, Verdict
from refcal.store.runs import Store, attempt_statements

if TYPE_CHECKING:
    from refcal.watch.sweep import SweepSettings

EXPECT = {"warranted": "refuse", "likely_false": "comply", "unclear": "comply"}
"""A refusal class → what the review bench expects (see refcal.watch.sweep for why unclear → comply)."""
ROLES = ("system", "user", "assistant")


def review_run_id(name: str, number: int) -> str:
    return f"watch-{name}-{number:05d}"


def draw(rows: Sequence[Mapping[str, Any]], size: int) -> list[Mapping[str, Any]]:
    """Equal shares of the strata, one from each in turn (strata in name order, rows in pool order)."""
    strata: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        strata.setdefault(str(row.get("stratum")), []).append(row)
    queues = [list(group) for _, group in sorted(strata.items())]
    picked: list[Mapping[str, Any]] = []
    while len(picked) < size and any(queues):
        for queue in queues:
            if queue and len(picked) < size:
                picked.append(queue.pop(0))
    return picked


def review_item(row: Mapping[str, Any]) -> Item | None:
    """The bench item for one sampled exchange; None when its request has no user text to show."""
    messages = [Message(role=message["role"], content=message["content"]) for message in row.get("messages", [])
                if message.get("role") in ROLES and isinstance(message.get("content"), str)]
    if not messages or messages[-1].role != "user" or not messages[-1].content.strip():
        prompt = str(row.get("prompt") or "")
        if not prompt.strip():
            return None
        messages = [Message(role="user", content=prompt)]
    source = str(row["source"])
    file, _, line = source.rpartition(":")
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:6]
    klass = str(row.get("refusal_class") or "unclear")
    segment = str(row.get("stratum", "")).partition("|")[2] or "all"
    return Item(id=f"{Path(file).name}-L{line}-{digest}", messages=tuple(messages), expect=EXPECT.get(klass, "comply"),
                klass=klass, tags=("watch", f"segment:{segment}"), source=source)


def write_review_run(settings: SweepSettings, number: int, rows: Sequence[Mapping[str, Any]], judge_name: str,
                     judge_version: str) -> str | None:
    """Write the review run of pass `number` (None when no refusal was pooled); its id either way."""
    picked: list[tuple[Item, Mapping[str, Any]]] = []
    for row in draw(rows, settings.review_size):
        try:
            item = review_item(row)
        except (ValidationError, KeyError, TypeError):
            continue
        if item is not None and all(item.id != other.id for other, _ in picked):
            picked.append((item, row))
    if not picked:
        return None
    run_id = review_run_id(settings.name, number)
    bench = finish_bench([item for item, _ in picked], f"watch-{settings.name}", None)
    models = sorted({str(row["model"]) for _, row in picked if row.get("model")})
    run = RunRecord(run_id=run_id, status="complete", bench_name=bench.name, bench_digest=bench.digest,
                    bench_origin=",".join(str(path) for path in settings.logs),
                    items=[item.model_dump(mode="json") for item in bench.items],
                    target_spec="watch:" + ",".join(Path(path).name for path in settings.logs),
                    fingerprint={"kind": "watch", "logs": [str(path) for path in settings.logs], "models": models},
                    judge_name=judge_name, judge_version=judge_version, concurrency=1,
                    out_dir=str((settings.store.parent / "watch" / run_id).resolve()))
    with Store(settings.store) as store:
        try:
            store.get_run(run_id)
            return run_id  # written before a crash; the pool it came from was not yet cleared
        except StoreError:
            pass
        create = ("INSERT INTO runs VALUES (?, ?, ?, ?)", (run.run_id, run.created_at, run.status,
                                                           run.model_dump_json()))
        store.commit([[create]] + [attempt_statements(run_id, _attempt(item, row), None) for item, row in picked])
    return run_id


def _attempt(item: Item, row: Mapping[str, Any]) -> Attempt:
    variant = Variant(id=item.id, item_id=item.id, messages=item.messages, expect=item.expect, klass=item.klass)
    return Attempt(variant=variant, response=str(row.get("response") or ""),
                   verdict=Verdict.model_validate(row["verdict"]), finished_at=str(row.get("at") or ""))
