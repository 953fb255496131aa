"""HFTarget against the real embedded SmolLM2 GGUF, dequantized by transformers (about 20 s to load)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from refcal.errors import FatalTargetError, MissingExtraError, TargetSpecError
from refcal.records import Completion, Message
from refcal.targets import make_target
from refcal.targets.base import GenerationParams, TargetFailed
from refcal.targets.llamacpp import embedded_gguf, file_digest

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach for the hub
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from refcal.targets.hf import HFTarget
from refcal.targets.weights import weights_digest

pytestmark = pytest.mark.hf

MAX_TOKENS = 16
CHATS = [
    [Message(role="user", content="Hi")],
    [Message(role="user", content="What is the capital of France?")],
    [Message(role="system", content="You answer in one short sentence."),
     Message(role="user", content="Explain why the sky is blue, and mention Rayleigh scattering.")],
]


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    try:
        return embedded_gguf("smollm2")
    except MissingExtraError as error:
        pytest.skip(str(error))


def test_concurrent_chats_share_one_batch_and_match_solo_greedy_answers(gguf_path: Path) -> None:
    target = HFTarget(str(gguf_path), params=GenerationParams(temperature=0, max_tokens=MAX_TOKENS),
                      batch_size=4)
    batch_sizes: list[int] = []
    generate = target._generate

    def counting_generate(prompts: list[list[int]]) -> list[Completion]:
        batch_sizes.append(len(prompts))
        return generate(prompts)

    target._generate = counting_generate  # type: ignore[method-assign]

    async def drill() -> tuple[list[Completion], list[Completion]]:
        async with target:
            together = await asyncio.gather(*(target.complete_async(chat) for chat in CHATS))
            alone = [await target.complete_async(chat) for chat in CHATS]
        return together, alone

    together, alone = asyncio.run(drill())

    assert batch_sizes == [3, 1, 1, 1]  # the three concurrent chats rode in one generate call
    for batched, solo in zip(together, alone, strict=True):
        assert batched.text.strip()
        # Left padding plus the attention mask must leave greedy decoding untouched, token for token.
        assert batched.text == solo.text
        assert batched.finish_reason == solo.finish_reason
        assert (batched.prompt_tokens, batched.completion_tokens) == (solo.prompt_tokens, solo.completion_tokens)
        assert batched.prompt_tokens and batched.prompt_tokens > 10  # the template's system turn is counted
        assert batched.completion_tokens is not None and 0 < batched.completion_tokens <= MAX_TOKENS
        assert (batched.finish_reason == "length") == (batched.completion_tokens == MAX_TOKENS)
    assert "Paris" in together[1].text
    assert together[1].finish_reason == "stop"
    assert together[2].finish_reason == "length"  # an explanation does not fit in 16 tokens


def test_fingerprint_is_stable_and_carries_the_weights_digest(gguf_path: Path) -> None:
    params = GenerationParams(temperature=0, max_tokens=MAX_TOKENS)
    first = HFTarget(str(gguf_path), params=params).fingerprint
    again = make_target(f"hf:{gguf_path}", params=params).fingerprint
    assert first == again and first.key == again.key
    assert first.kind == "hf" and first.model == str(gguf_path) and first.endpoint is None
    assert first.weights_digest == file_digest(gguf_path)
    assert first.params == params
    hotter = HFTarget(str(gguf_path), params=params.model_copy(update={"temperature": 0.7})).fingerprint
    assert hotter.key != first.key


def test_directory_digest_covers_weight_files_only(tmp_path: Path) -> None:
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"one")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"two")
    (tmp_path / "config.json").write_text("{}")
    digest = weights_digest(tmp_path)
    assert digest.startswith("sha256:")
    (tmp_path / "config.json").write_text('{"edited": true}')
    assert weights_digest(tmp_path) == digest
    (tmp_path / "extra.bin").write_bytes(b"three")
    assert weights_digest(tmp_path) != digest
    assert HFTarget(str(tmp_path)).fingerprint.weights_digest == weights_digest(tmp_path)


def test_missing_path_is_a_spec_error_naming_it(tmp_path: Path) -> None:
    for missing in (tmp_path / "nope.gguf", tmp_path / "no-such-dir"):
        with pytest.raises(TargetSpecError, match=str(missing)):
            make_target(f"hf:{missing}")


def test_directory_without_weights_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(TargetSpecError, match=str(tmp_path)):
        HFTarget(str(tmp_path)).fingerprint  # noqa: B018 (the property is what raises)


def test_unloadable_weights_fail_at_start_naming_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 100)
    target = HFTarget(str(junk))

    async def start() -> None:
        async with target:
            pass

    with pytest.raises(FatalTargetError, match=str(junk)):
        asyncio.run(start())


def test_sending_before_start_fails_without_retries(gguf_path: Path) -> None:
    target = HFTarget(str(gguf_path))
    with pytest.raises(TargetFailed) as caught:
        asyncio.run(target.complete_async(CHATS[0]))
    assert isinstance(caught.value.last, FatalTargetError) and caught.value.tries == 1


class _StubTokenizer:
    """Stands in for a loaded tokenizer: one token per message, so prompts are distinguishable."""

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], **_: Any) -> list[int]:
        return [len(message["content"]) for message in messages]


def _stubbed(gguf_path: Path, batch_size: int) -> HFTarget:
    """A target whose load and generate are stubs: exercises the queue and batching, not torch."""
    target = HFTarget(str(gguf_path), batch_size=batch_size)
    target._load = lambda: (object(), _StubTokenizer(), [0])  # type: ignore[method-assign]
    return target


def test_batches_close_when_full_or_when_the_queue_runs_dry(gguf_path: Path) -> None:
    target = _stubbed(gguf_path, batch_size=2)
    batch_sizes: list[int] = []

    def fake_generate(prompts: list[list[int]]) -> list[Completion]:
        batch_sizes.append(len(prompts))
        return [Completion(text=str(prompt)) for prompt in prompts]

    target._generate = fake_generate  # type: ignore[method-assign]
    chats = [[Message(role="user", content="x" * length)] for length in range(1, 6)]

    async def drill() -> list[Completion]:
        async with target:
            return await asyncio.gather(*(target.complete_async(chat) for chat in chats))

    answers = asyncio.run(drill())
    assert [answer.text for answer in answers] == ["[1]", "[2]", "[3]", "[4]", "[5]"]  # each its own
    assert batch_sizes == [2, 2, 1]


def test_closing_mid_batch_fails_the_waiting_callers(gguf_path: Path) -> None:
    target = _stubbed(gguf_path, batch_size=4)
    started, release = threading.Event(), threading.Event()

    def stuck_generate(prompts: list[list[int]]) -> list[Completion]:
        started.set()
        release.wait(10)
        return [Completion(text="late") for _ in prompts]

    target._generate = stuck_generate  # type: ignore[method-assign]

    async def drill() -> BaseException | Completion:
        await target.start_async()
        pending = asyncio.ensure_future(target.complete_async(CHATS[0]))
        await asyncio.to_thread(started.wait, 10)
        await target.close_async()
        release.set()
        (outcome,) = await asyncio.gather(pending, return_exceptions=True)
        return outcome

    outcome = asyncio.run(drill())
    assert isinstance(outcome, TargetFailed) and isinstance(outcome.last, FatalTargetError)
    assert "closed" in str(outcome)
