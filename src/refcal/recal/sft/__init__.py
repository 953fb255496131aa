"""LoRA SFT of a base model on a chat corpus with TRL's SFTTrainer, optionally after the contrastive stage; the
adapter is merged and saved as safetensors plus tokenizer, so the output folder loads as an `hf:` target.

Two calls: `prepare_sft` checks everything that can be checked before a step is taken (the output folder, the
corpus rows, the contamination check against every frozen bench, the base loading, the LoRA target modules, row
lengths) and writes nothing; `run_sft` trains, checkpoints, merges and writes the training receipt.

Loss on completions only: each chat row becomes a TRL prompt-completion row, the prompt being every message before
the final assistant turn and the completion that turn, both rendered by the model's own chat template. Earlier
assistant turns of a multi-turn row are context, not targets.

Checkpoints go to `OUT/checkpoints/checkpoint-N` every `save_steps` (the newest two kept). A second start with
the same base, corpus and settings resumes from the newest complete checkpoint; a half-written one (a kill or a
full disk mid-save) is removed first, because the trainer writes `trainer_state.json` last. The merged model is
written to a staging folder and moved into OUT with `config.json` last, so OUT never holds a loadable half model.

GPU: the same calls on CUDA. `device = "auto"` picks the GPU and `dtype = "auto"` turns to bfloat16 there
(weights loaded in bf16, bf16 autocast; the LoRA weights stay float32). What usually changes on a GPU:
`batch_size` 16–32 (or keep 4 with `gradient_accumulation` 4–8), `gradient_checkpointing = true` for models
above ~1B, `max_length` 1024–2048; `cpu_threads` is ignored. CPU in float32 stays the tested path.

One concept a module: `settings`, `errors`, `model` (libraries, device, the base and its LoRA targets), `rows`
(contamination and token lengths), `output` (the run plan and checkpoints), `prepare`, `training` and `save` (the
merge). The rows are read by `refcal.corpus.reader.read_chat_corpus`, the base found and loaded by
`refcal.targets.weights`.
"""


from __future__ import annotations

from refcal.recal.sft.errors import ContaminationError, TrainingSetupError
from refcal.recal.sft.model import INSTALL_HINT, load_base, resolve_device
from refcal.recal.sft.output import CHECKPOINTS, RunPlan, check_output, complete_checkpoints
from refcal.recal.sft.prepare import SFTJob, prepare_sft
from refcal.recal.sft.settings import SFTSettings, load_settings
from refcal.recal.sft.training import Progress, Stage, run_sft

__all__ = [
    "CHECKPOINTS",
    "INSTALL_HINT",
    "ContaminationError",
    "Progress",
    "RunPlan",
    "SFTJob",
    "SFTSettings",
    "Stage",
    "TrainingSetupError",
    "check_output",
    "complete_checkpoints",
    "load_base",
    "load_settings",
    "prepare_sft",
    "resolve_device",
    "run_sft",
]
