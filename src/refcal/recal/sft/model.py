"""The base model of an SFT run: the training libraries imported late, the device and dtype chosen, the base
loaded (through `refcal.targets.weights`) and its LoRA target modules checked."""

from __future__ import annotations

from typing import Any, Literal

from refcal.errors import MissingExtraError
from refcal.recal.sft.errors import TrainingSetupError
from refcal.recal.sft.settings import SFTSettings
from refcal.targets.weights import BaseWeights, load_dense

INSTALL_HINT = "pip install torch==2.13.0 && pip install 'refcal[hf,recal]'"


def import_training() -> tuple[Any, Any, Any, Any]:
    """torch, transformers, trl and peft, or a MissingExtraError with the install line."""
    try:
        import peft
        import torch
        import transformers
        import trl
    except ImportError as error:
        raise MissingExtraError(f"LoRA SFT needs torch, transformers, trl and peft ({error.name} is missing): "
                                f"{INSTALL_HINT}") from None
    return torch, transformers, trl, peft


def resolve_device(settings: SFTSettings) -> tuple[str, str]:
    """(device, dtype) for the settings on this machine; TrainingSetupError when CUDA is asked for but absent."""
    torch, *_ = import_training()
    has_cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not has_cuda:
        raise TrainingSetupError("device = cuda, but torch sees no CUDA device")
    device = "cuda" if settings.device == "cuda" or (settings.device == "auto" and has_cuda) else "cpu"
    if settings.dtype != "auto":
        return device, settings.dtype
    return device, "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def load_base(base: BaseWeights, device: str, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer) from local files only, a GGUF dequantized to a plain dense model; TrainingSetupError
    naming the spec when they cannot be loaded or the tokenizer has no chat template."""
    torch, *_ = import_training()
    model, tokenizer = load_dense(base, getattr(torch, dtype), TrainingSetupError,
                                  "SFT renders rows with the model's own template")
    return model.to(device), tokenizer


def linear_module_names(model: Any) -> list[str]:
    """The last name part of every linear layer (`q_proj`, `down_proj`, `lm_head`, ...)."""
    torch, *_ = import_training()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear)})


def check_target_modules(model: Any, wanted: list[str] | Literal["all-linear"], spec: str) -> None:
    """TrainingSetupError naming every wanted module that matches no linear layer, and the ones that exist."""
    if wanted == "all-linear":
        return
    torch, *_ = import_training()
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    missing = [target for target in wanted
               if not any(name == target or name.endswith(f".{target}") for name in linear)]
    if missing:
        raise TrainingSetupError(f"LoRA target module(s) {', '.join(missing)} not found in {spec}; its linear "
                                 f"modules are {', '.join(linear_module_names(model))} (or use all-linear)")
