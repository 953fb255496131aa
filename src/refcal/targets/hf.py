"""Local transformers weights as a target, batched: `hf:PATH` where PATH is a directory of weights
(config, safetensors or bin, tokenizer) or a `.gguf` file, which transformers dequantizes on load.

Concurrent requests are gathered into batches and answered by one `model.generate` call, because on
local hardware a batch of prompts costs little more than one. Prompts are padded on the left, so every
row's new tokens start at the same column and greedy output does not depend on the batch it rode in.

torch and transformers are imported only when a target loads, so the rest of refcal runs without them.
Nothing is ever fetched from the hub and `trust_remote_code` stays off unless the caller turns it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refcal.errors import FatalTargetError, InputFileError, MissingExtraError, TargetError, TargetSpecError
from refcal.records import Completion, Message
from refcal.targets.base import Fingerprint, GenerationParams, RetryPolicy, Target
from refcal.targets.weights import accelerator, weights_digest

INSTALL_HINT = "pip install torch==2.13.0 && pip install 'refcal[hf]'"
BATCH_WAIT_S = 0.005
"""How long an open batch waits for one more request once the queue is empty: long enough for a drill's
burst of submissions to land in the same batch, short against the seconds a generate call takes."""


def _import_hf() -> tuple[Any, Any]:
    """torch and transformers, or a MissingExtraError that says how to install them."""
    try:
        import torch
        import transformers
    except ImportError as error:
        raise MissingExtraError(f"the hf target needs torch and transformers ({error.name} is missing): "
                                f"{INSTALL_HINT}") from None
    return torch, transformers


@dataclass
class _Request:
    """One chat waiting for a batch: its prompt tokens and the future its caller awaits."""

    input_ids: list[int]
    future: asyncio.Future[Completion] = field(repr=False)


def _fail(requests: Sequence[_Request], error: TargetError) -> None:
    """Hand `error` to every caller still waiting on one of `requests`."""
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)


class HFTarget(Target):
    """Answers chats with a local transformers model, generating up to `batch_size` chats at once.

    The concurrency limit is at least `batch_size`, or batches could never fill.
    """

    def __init__(self, path: str, *, params: GenerationParams | None = None, batch_size: int = 8,
                 concurrency: int | None = None, retry: RetryPolicy | None = None,
                 trust_remote_code: bool = False, batch_wait_s: float = BATCH_WAIT_S) -> None:
        if batch_size < 1:
            raise TargetSpecError(f"batch_size must be at least 1, got {batch_size}")
        super().__init__(concurrency=max(concurrency or batch_size, batch_size), retry=retry)
        self.path = path
        self.model_path = Path(path).expanduser()
        is_gguf = self.model_path.suffix == ".gguf"
        if not (self.model_path.is_file() if is_gguf else self.model_path.is_dir()):
            expected = "GGUF file" if is_gguf else "directory of transformers weights"
            raise TargetSpecError(f"hf target: no such {expected}: {path}")
        missing = [name for name in ("torch", "transformers", *(("gguf",) if is_gguf else ()))
                   if importlib.util.find_spec(name) is None]
        if missing:  # checked here, without importing, so a drill fails before it starts
            raise MissingExtraError(f"the hf target needs {', '.join(missing)}: {INSTALL_HINT}")
        self.params = params or GenerationParams()
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.trust_remote_code = trust_remote_code
        self._fingerprint: Fingerprint | None = None
        self._model: Any = None
        self._steering: Any = None
        self._tokenizer: Any = None
        self._eos_ids: list[int] = []
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def fingerprint(self) -> Fingerprint:
        # Hashed on first use, not in __init__: a directory model can be many gigabytes.
        if self._fingerprint is None:
            self._fingerprint = Fingerprint(kind="hf", model=self.path, params=self.params,
                                            weights_digest=weights_digest(self.model_path))
        return self._fingerprint

    @property
    def description(self) -> str:
        return f"hf:{self.path}"

    async def start_async(self) -> None:
        """Load weights in a thread (tens of seconds for a GGUF), then start the batching worker."""
        if self._worker is not None:
            return
        self._model, self._tokenizer, self._eos_ids = await asyncio.to_thread(self._load)
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run_batches(self._queue), name=f"hf-batches:{self.path}")

    async def close_async(self) -> None:
        """Stop the worker, fail whoever still waits, and drop the model so its memory can go."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        waiting = []
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        _fail(waiting, FatalTargetError(f"hf target {self.path} was closed"))
        self._queue = None
        self._model = self._tokenizer = None
        gc.collect()

    async def _send_async(self, messages: Sequence[Message]) -> Completion:
        if self._queue is None or self._worker is None or self._worker.done():
            raise FatalTargetError(f"hf target {self.path} is not running; use `async with target:`")
        try:
            # Templated here rather than in the batch, so a chat the template rejects fails alone.
            input_ids = self._tokenizer.apply_chat_template(
                [message.model_dump() for message in messages], add_generation_prompt=True,
                return_dict=False)
        except Exception as error:
            raise FatalTargetError(f"the chat template of {self.path} rejected this chat: {error}") from error
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(list(input_ids), future))
        return await future

    async def _run_batches(self, queue: asyncio.Queue[_Request]) -> None:
        """The one consumer of the queue: take a batch, generate it in a thread, hand out the answers."""
        while True:
            batch = [await queue.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), self.batch_wait_s))
                    except TimeoutError:
                        break
            live = [request for request in batch if not request.future.done()]  # callers may have gone
            if not live:
                continue
            try:
                completions = await asyncio.to_thread(self._generate, [request.input_ids for request in live])
            except asyncio.CancelledError:  # closed mid-batch: its callers must not wait forever
                _fail(live, FatalTargetError(f"hf target {self.path} was closed"))
                raise
            except Exception as error:
                _fail(live, error if isinstance(error, TargetError) else FatalTargetError(
                    f"generation with {self.path} failed: {type(error).__name__}: {error}"))
            else:
                for request, completion in zip(live, completions, strict=True):
                    if not request.future.done():
                        request.future.set_result(completion)

    def _attach_steering(self, model: Any) -> Any:
        """Conditional steering saved by `refcal recal direction` beside the weights (steering.json); the
        hooks are kept for the model's lifetime. None for plain weights."""
        if not self.model_path.is_dir() or not (self.model_path / "steering.json").exists():
            return None
        from refcal.targets.steering import load_steering

        try:
            return load_steering(model, self.model_path)
        except InputFileError as error:
            raise FatalTargetError(f"{self.path}: {error}") from error

    def _load(self) -> tuple[Any, Any, list[int]]:
        """Tokenizer and model from local files only; a FatalTargetError naming the path otherwise."""
        torch, transformers = _import_hf()
        if self.model_path.is_file():
            directory, extra = self.model_path.parent, {"gguf_file": self.model_path.name}
        else:
            directory, extra = self.model_path, {}
        options = {"local_files_only": True, "trust_remote_code": self.trust_remote_code, **extra}
        try:
            # The config is read once and shared: with a GGUF each read re-parses the whole file.
            config = transformers.AutoConfig.from_pretrained(directory, **options)
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory, config=config, **options)
            model = transformers.AutoModelForCausalLM.from_pretrained(directory, config=config, **options)
        except Exception as error:
            raise FatalTargetError(f"transformers could not load {self.path}: {error}") from error
        if not getattr(tokenizer, "chat_template", None):
            raise FatalTargetError(f"{self.path} has no chat template, and refcal sends chats")
        model.to(accelerator()).eval()
        self._steering = self._attach_steering(model)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        configured = model.generation_config.eos_token_id
        eos_ids = {tokenizer.eos_token_id} | set(configured if isinstance(configured, list) else [configured])
        eos_ids.discard(None)
        if self.params.seed is not None:
            torch.manual_seed(self.params.seed)
        return model, tokenizer, sorted(eos_ids)

    def _generate(self, prompts: list[list[int]]) -> list[Completion]:
        """One generate call for the whole batch; runs in a worker thread."""
        torch, _ = _import_hf()
        batch = self._tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        if self.params.temperature == 0:
            sampling: dict[str, Any] = {"do_sample": False}
        else:
            # Only the temperature is in the fingerprint, so the model's own top-k/top-p are turned off.
            sampling = {"do_sample": True, "temperature": self.params.temperature, "top_k": 0, "top_p": 1.0}
        with torch.inference_mode():
            output = self._model.generate(
                **batch.to(self._model.device), max_new_tokens=self.params.max_tokens,
                pad_token_id=self._tokenizer.pad_token_id, eos_token_id=self._eos_ids, **sampling)
        new_rows = output[:, batch["input_ids"].shape[1]:].tolist()
        return [self._completion(prompt, row) for prompt, row in zip(prompts, new_rows, strict=True)]

    def _completion(self, prompt: list[int], row: list[int]) -> Completion:
        """A row's reply: tokens before its first EOS (rows that finished early are padded after it).
        `completion_tokens` leaves the EOS out; a row without one ran into `max_tokens`."""
        end = next((index for index, token in enumerate(row) if token in self._eos_ids), None)
        tokens = row if end is None else row[:end]
        hit_limit = end is None and len(row) >= self.params.max_tokens
        return Completion(text=self._tokenizer.decode(tokens, skip_special_tokens=True),
                          finish_reason="length" if hit_limit else "stop",
                          prompt_tokens=len(prompt), completion_tokens=len(tokens))
