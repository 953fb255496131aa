"""A base model's weights from a target spec: where they are, how they load into transformers, and their digest.
The one place SFT and direction editing find and load a base."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refcal.errors import TargetSpecError
from refcal.targets.llamacpp import embedded_gguf, file_digest


def base_location(spec: str) -> tuple[Path, str | None]:
    """(directory, GGUF file name or None) of `hf:PATH` (a folder of transformers weights or a .gguf file),
    `llamacpp:smollm2` or `llamacpp:PATH.gguf` (that GGUF, loaded into transformers); TargetSpecError for
    anything else (an openai: target has no weights) or a path that does not exist."""
    kind, _, rest = spec.partition(":")
    if kind == "llamacpp" and rest:
        path = Path(rest).expanduser() if rest.endswith(".gguf") else embedded_gguf(rest)
    elif kind == "hf" and rest:
        path = Path(rest).expanduser()
    else:
        raise TargetSpecError(f"bad base '{spec}': expected hf:PATH (a folder of transformers weights or a .gguf "
                              "file), llamacpp:smollm2 or llamacpp:PATH.gguf (an openai: target has no weights)")
    if path.suffix == ".gguf":
        if not path.is_file():
            raise TargetSpecError(f"bad base '{spec}': no such GGUF file {path}")
        return path.parent, path.name
    if not (path / "config.json").is_file():
        raise TargetSpecError(f"bad base '{spec}': {path} is not a folder of transformers weights (no config.json)")
    return path, None


@dataclass(frozen=True)
class BaseWeights:
    """Where a base spec's weights are: a directory, and the GGUF file in it when the base is one."""

    spec: str
    directory: Path
    gguf_file: str | None

    @property
    def path(self) -> Path:
        return self.directory / self.gguf_file if self.gguf_file else self.directory


def resolve_base(spec: str) -> BaseWeights:
    """The weights of a base spec (see `base_location`); TargetSpecError for a bad spec or a missing path."""
    directory, gguf_file = base_location(spec)
    return BaseWeights(spec, directory, gguf_file)


def base_digest(spec: str) -> str:
    """The weights digest of a base spec, as its target would fingerprint it (the key of readiness records)."""
    return weights_digest(resolve_base(spec).path)


def load_dense(base: BaseWeights, dtype: Any, error: type[Exception], template_use: str) -> tuple[Any, Any]:
    """(model, tokenizer) from local files only, never with remote code, a GGUF dequantized to plain dense
    weights (a model left in GGUF blocks can be neither trained, edited nor saved as safetensors); `error`
    naming the spec when they cannot be loaded or the tokenizer has no chat template (`template_use` says why
    the template is needed)."""
    import transformers

    options: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    model_options: dict[str, Any] = {"dtype": dtype}
    if base.gguf_file is not None:
        options["gguf_file"] = base.gguf_file
        model_options["quantization_config"] = transformers.GgufConfig(dequantize=True)
    try:
        config = transformers.AutoConfig.from_pretrained(base.directory, **options)
        tokenizer = transformers.AutoTokenizer.from_pretrained(base.directory, config=config, **options)
        model = transformers.AutoModelForCausalLM.from_pretrained(base.directory, config=config, **options,
                                                                  **model_options)
    except Exception as failure:
        raise error(f"transformers could not load the base {base.spec}: {failure}") from failure
    if not getattr(tokenizer, "chat_template", None):
        raise error(f"{base.spec} has no chat template: {template_use}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def accelerator() -> str:
    """`cuda` when torch sees a GPU, else `cpu`: direction editing and the hf target run where SFT would (the
    `REFCAL_DEVICE` variable overrides, e.g. `cpu` on a GPU machine)."""
    import os

    import torch

    return os.environ.get("REFCAL_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count set for the block and restored after (it is process-wide). On a shared two-core
    machine one thread can be several times faster than two: OpenMP threads spin-wait on a busy core."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "steering.json")
"""The files whose bytes decide a directory model's answers (conditional steering included); config and
tokenizer files are not hashed."""


def weights_digest(path: Path) -> str:
    """sha256 of a .gguf file, or of a directory's sorted weight files as (name, digest) pairs, so a
    renamed shard or a changed byte both change the digest."""
    if path.is_file():
        return file_digest(path)
    files = sorted({file for pattern in WEIGHT_PATTERNS for file in path.glob(pattern) if file.is_file()})
    if not files:
        raise TargetSpecError(f"no weights ({' or '.join(WEIGHT_PATTERNS)}) in {path}")
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file_digest(file)}\n".encode())
    return "sha256:" + digest.hexdigest()
