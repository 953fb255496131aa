"""The drill runner: pulls variants from a lazy plan, sends them through the target, judges each
response and commits it to the store as soon as it lands. It owns no rules: targets retry, judges
decide, the store persists.

Two things it does to what is kept: a response longer than the cap (`$REFCAL_MAX_RESPONSE_BYTES`, default
256 KiB of UTF-8) is cut there, and the judge reads the cut text; the stored text ends with a note giving
the full length and the sha256 of the full text. And every attempt is scrubbed of held secrets
(`refcal.redact.hold_secret`: the API keys targets read) before it is judged, recorded or reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterator

from refcal.bench.items import Item
from refcal.bench.loaders import finish_bench
from refcal.drills.attacker import Attacker
from refcal.drills.plan import drill_order, plan_variants, request_key, score_variant
from refcal.errors import StoreError, TargetError
from refcal.judges.base import Judge
from refcal.records import Attempt, Completion, RunRecord, Variant, Verdict
from refcal.redact import held_secrets, scrub_json
from refcal.run.conversation import Prompter, ScriptPrompter, run_conversation_async
from refcal.store.runs import GroupCommitWriter, Store, utc_now
from refcal.targets.base import Target

AttemptCallback = Callable[[Attempt], None]

MAX_RESPONSE_ENV = "REFCAL_MAX_RESPONSE_BYTES"
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
"""What is kept of one response (UTF-8 bytes, the truncation note included)."""
MIN_RESPONSE_BYTES = 1024
TRUNCATED = "[refcal: response truncated"
"""How the note on a cut response begins."""


def response_cap_bytes() -> int:
    """The response cap: `$REFCAL_MAX_RESPONSE_BYTES` when set, else DEFAULT_MAX_RESPONSE_BYTES."""
    value = os.environ.get(MAX_RESPONSE_ENV, "").strip().replace("_", "")
    if not value:
        return DEFAULT_MAX_RESPONSE_BYTES
    if not value.isdigit() or int(value) < MIN_RESPONSE_BYTES:
        raise ValueError(f"${MAX_RESPONSE_ENV} must be a whole number of bytes, at least {MIN_RESPONSE_BYTES:,}; "
                         f"got '{value}'")
    return int(value)


def cap_response(text: str, cap: int) -> tuple[str, str]:
    """(what the judge reads, what is stored) of one response: both `text` when it fits in `cap` bytes; else
    its first bytes, and those plus a note with the full length and the sha256 of the full text, in `cap`."""
    if len(text) * 4 <= cap:
        return text, text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= cap:
        return text, text
    digest = hashlib.sha256(raw).hexdigest()
    note = f"\n{TRUNCATED} to {{}} of {len(raw):,} bytes; sha256 of the full text {digest}]"
    room = cap - len(note.format(f"{cap:,}").encode())
    kept = raw[:max(0, room)].decode("utf-8", "ignore")
    size = len(kept.encode("utf-8", "surrogatepass"))
    return kept, kept + note.format(f"{size:,}")


def scrubbed(attempt: Attempt) -> Attempt:
    """`attempt` with held secrets scrubbed from every text in it (response, error, reasons, messages)."""
    if not held_secrets():
        return attempt
    data = attempt.model_dump(mode="json")
    clean = scrub_json(data)
    return attempt if clean == data else Attempt.model_validate(clean)


def remaining_variants(run: RunRecord, store: Store) -> Iterator[Variant]:
    """The run's planned variants that have no committed attempt yet."""
    bench = finish_bench([Item.model_validate(item) for item in run.items], run.bench_name, run.bench_origin)
    return plan_variants(bench, limit=run.limit, skip=store.done_variant_ids(run.run_id), mutation=run.mutation,
                         replay=run.replay, hints=run.hints)


async def run_drill_async(run: RunRecord, target: Target, judge: Judge, store: Store,
                          on_attempt: AttemptCallback | None = None, attacker: Attacker | None = None) -> None:
    """Send every remaining variant of `run` exactly once; the target (and attacker) must already be started."""
    if run.scripts or run.attacker:
        await run_slow_drill_async(run, target, judge, store, on_attempt, attacker)
        return
    variants = remaining_variants(run, store)
    fingerprint_key = target.fingerprint.key
    cap = response_cap_bytes()
    writer = GroupCommitWriter(store.path)

    async def worker() -> None:
        for variant in variants:  # one shared lazy iterator: memory stays bounded
            key = request_key(fingerprint_key, variant.messages)
            attempt = await _attempt_async(variant, target, judge, store if run.use_cache else None, key, cap)
            await writer.record_async(run.run_id, attempt, cache_key=key)  # --no-cache still refreshes the cache
            if on_attempt is not None:
                on_attempt(attempt)

    await _run_workers(run, store, writer, worker)


async def _run_workers(run: RunRecord, store: Store, writer: GroupCommitWriter,
                       worker: Callable[[], Awaitable[None]]) -> None:
    """`run.concurrency` workers until done; on any exit the run's status says how it ended."""
    store.set_status(run.run_id, "running")
    tasks = [asyncio.create_task(worker()) for _ in range(max(1, run.concurrency))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # no worker may outlive the writer
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # a full disk fails this write too: the first error is reported
            store.set_status(run.run_id, "interrupted")
        raise
    finally:
        writer.close()
    store.set_status(run.run_id, "complete")


async def run_slow_drill_async(run: RunRecord, target: Target, judge: Judge, store: Store,
                               on_attempt: AttemptCallback | None = None, attacker: Attacker | None = None) -> None:
    """Put every item through every script (or the attacker), conversations in parallel, turns committed
    as they land. On resume, a turn already recorded is read back instead of sent, so each turn is sent once."""
    bench = finish_bench([Item.model_validate(item) for item in run.items], run.bench_name, run.bench_origin)
    items = drill_order(bench.items)
    items = items if run.limit is None else items[:run.limit]
    if any(item.grounded for item in items):  # scripts send item.messages: the packet would be left out
        raise ValueError("slow drills (scripts, attacker) do not take grounded items (items with a packet); "
                         "drill them as a fast drill")
    prompters = _prompters(run, attacker)
    recorded = {attempt.variant.id: attempt for attempt in store.attempts(run.run_id)}
    work = iter([(item, prompter) for item in items for prompter in prompters])
    send = direct_step(target, judge, store if run.use_cache else None, response_cap_bytes())
    writer = GroupCommitWriter(store.path)

    async def record(attempt: Attempt) -> None:
        attempt = scrubbed(attempt)
        await writer.record_async(run.run_id, attempt,
                                  cache_key=request_key(target.fingerprint.key, attempt.variant.messages))
        if on_attempt is not None:
            on_attempt(attempt)

    async def step(variant: Variant) -> Attempt:
        attempt = await send(variant)
        await record(attempt)
        return attempt

    async def worker() -> None:
        for item, prompter in work:
            await run_conversation_async(item, prompter, step, record, run.to_end, recorded)

    await _run_workers(run, store, writer, worker)


def _prompters(run: RunRecord, attacker: Attacker | None) -> list[Prompter]:
    if run.attacker is None:
        return [ScriptPrompter(script) for script in run.scripts or ()]
    if attacker is None or attacker.plan != run.attacker:
        raise StoreError(f"run {run.run_id} is an attacker drill: give it the attacker it was planned with "
                         f"({run.attacker.spec})")
    return [attacker]


def direct_step(target: Target, judge: Judge, cache: Store | None = None,
                cap: int = DEFAULT_MAX_RESPONSE_BYTES) -> Callable[[Variant], Awaitable[Attempt]]:
    """Send one variant (through the cache when given) and judge the reply (cut to `cap` bytes)."""
    async def step(variant: Variant) -> Attempt:
        return await _attempt_async(variant, target, judge, cache, request_key(target.fingerprint.key,
                                                                                 variant.messages), cap)
    return step


async def _attempt_async(variant: Variant, target: Target, judge: Judge, cache: Store | None,
                         key: str, cap: int = DEFAULT_MAX_RESPONSE_BYTES) -> Attempt:
    completion = cache.cached(key) if cache is not None else None
    cached = completion is not None
    if completion is None:
        try:
            completion = await target.complete_async(variant.messages)
        except TargetError as error:
            retries = getattr(error, "tries", 1) - 1
            return scrubbed(Attempt(variant=variant, error=str(error), retries=retries, finished_at=utc_now()))
    judged, kept = cap_response(completion.text, cap)
    if judged is not completion.text:
        completion = completion.model_copy(update={"text": judged})
    return scrubbed(Attempt(variant=variant, response=kept, finish_reason=completion.finish_reason,
                            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                            latency_s=completion.latency_s, retries=completion.retries, cached=cached,
                            verdict=await judge_safely_async(judge, variant.prompt, completion),
                            grounded=score_variant(variant, completion.text), finished_at=utc_now()))


async def judge_safely_async(judge: Judge, prompt: str, completion: Completion) -> Verdict:
    """A judge that crashes yields `undetermined` with the reason, never a side."""
    try:
        return (await judge.judge_batch([(prompt, completion.text)]))[0]
    except Exception as error:
        return Verdict(label="undetermined", score=0.0, lane=judge.name,
                       reason=f"judge error: {type(error).__name__}: {error}")
