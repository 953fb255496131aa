"""Direction editing (`refcal recal direction`): refusal directions, the edits built on them, and the Optuna search
that chooses one.

Directions are differences of means of the residual stream, read at the last prompt token (after the model's own
chat template) at the output of every decoder layer, one unit vector per layer:

- the **refusal** direction: must-refuse prompts minus ordinary harmless instructions;
- the **condition** direction: must-refuse prompts minus everything that should be answered (their benign
  look-alikes and the harmless instructions, pooled), with the midpoint of the two means as its centre. It
  recognises a harmful request rather than a harmful-sounding one. Pooling the harmless instructions in keeps
  ordinary requests under the threshold too: on SmolLM2-135M's starter bench (half held out), the best held-out
  balanced accuracy over the three kinds rose from 0.77–0.81 to 0.82–0.87 on layers 14–26.

Three edits use them:

- `Ablation` removes the refusal direction from what the attention output projection (`o_proj`) and the MLP down
  projection (`down_proj`) write into the residual stream, W ← W − w·r rᵀ W, with a per-layer weight w from a
  `Kernel` (heretic's: a peak weight at a layer position falling linearly to a minimum weight `width` layers away,
  zero beyond). It lowers refusals, so it targets over-refusal.
- `Steering` without a condition adds w·s·r to every MLP output of the kernel's layers (s: that layer's distance
  between the harmful and harmless means, so strength 1 moves a harmless activation by the whole gap). A constant
  addition is a bias, so it is saved as a `down_proj` bias where the architecture has an `mlp_bias` switch
  (Llama family) and the folder loads in plain transformers; elsewhere it is saved as a steering file.
- `Steering` with a `Condition` (conditional activation steering, after IBM's CAST) reads the residual at the
  condition layer once per prompt (the prefill pass), takes the cosine between its offset from the centre and the
  condition direction, and steers that row only when the cosine reaches the threshold, for the prompt and every
  token generated after it. Look-alikes under the threshold are left exactly as they were. Steering acts only on
  layers after the condition layer, so the gate is known before the first steered layer runs and the reading is
  never of a steered stream. A gate is not a weight, so the edit is saved as `steering.json` plus
  `steering.safetensors` beside unchanged weights, and `load_steering` attaches it again (the `hf:` target must call
  it; plain transformers would silently answer unsteered).

One concept a module: `edits` (the edits as data), `reading` (residuals, KL, replies, the directions), `apply`
(ablation and steering plans), `base` and `save` (the base loaded, the edited model saved), `settings`, `split`,
`trials` (the records), `pareto` (the front and the choice), `plot` (the front drawn), `harmless` (the built-in
instructions), `session` (what trials share, one evaluation), `prepare`, `search` (the study and the run) and
`receipt`. `settings`, `split`, `edits`, `trials`, `pareto` and `plot` import without torch.

The names below load lazily (PEP 562), so importing a pure module of the package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "HARMLESS_INSTRUCTIONS",
    "RECEIPT_NAME",
    "Ablation",
    "BenchSplit",
    "ChoiceRule",
    "Condition",
    "DirectionJob",
    "DirectionOutcome",
    "DirectionReceipt",
    "Directions",
    "Edit",
    "Evaluation",
    "Kernel",
    "Mode",
    "SavedAs",
    "SearchPlan",
    "SearchReport",
    "SearchSettings",
    "Steering",
    "TrialRecord",
    "ablate",
    "ablated",
    "choose",
    "condition_scores",
    "evaluation_text",
    "extract_directions",
    "generate",
    "kl_divergence",
    "load_base",
    "next_token_logprobs",
    "pareto_fragment",
    "pareto_front",
    "pareto_page",
    "prepare_direction",
    "read_report",
    "residuals",
    "resolve_base",
    "run_direction",
    "save_edited",
    "split_bench",
    "steering_plan",
]

_LAZY: dict[str, str] = {
    "ablate": "apply",
    "ablated": "apply",
    "steering_plan": "apply",
    "load_base": "base",
    "resolve_base": "base",
    "Ablation": "edits",
    "Condition": "edits",
    "Edit": "edits",
    "Kernel": "edits",
    "SavedAs": "edits",
    "Steering": "edits",
    "HARMLESS_INSTRUCTIONS": "harmless",
    "choose": "pareto",
    "pareto_front": "pareto",
    "evaluation_text": "plot",
    "pareto_fragment": "plot",
    "pareto_page": "plot",
    "DirectionJob": "prepare",
    "prepare_direction": "prepare",
    "Directions": "reading",
    "condition_scores": "reading",
    "extract_directions": "reading",
    "generate": "reading",
    "kl_divergence": "reading",
    "next_token_logprobs": "reading",
    "residuals": "reading",
    "DirectionReceipt": "receipt",
    "RECEIPT_NAME": "receipt",
    "save_edited": "save",
    "DirectionOutcome": "search",
    "run_direction": "search",
    "ChoiceRule": "settings",
    "Mode": "settings",
    "SearchSettings": "settings",
    "BenchSplit": "split",
    "split_bench": "split",
    "Evaluation": "trials",
    "SearchPlan": "trials",
    "SearchReport": "trials",
    "TrialRecord": "trials",
    "read_report": "trials",
}

if TYPE_CHECKING:  # for type checkers; at run time the names load lazily
    from refcal.recal.direction.apply import ablate, ablated, steering_plan
    from refcal.recal.direction.base import load_base, resolve_base
    from refcal.recal.direction.edits import Ablation, Condition, Edit, Kernel, SavedAs, Steering
    from refcal.recal.direction.harmless import HARMLESS_INSTRUCTIONS
    from refcal.recal.direction.pareto import choose, pareto_front
    from refcal.recal.direction.plot import evaluation_text, pareto_fragment, pareto_page
    from refcal.recal.direction.prepare import DirectionJob, prepare_direction
    from refcal.recal.direction.reading import (
        Directions,
        condition_scores,
        extract_directions,
        generate,
        kl_divergence,
        next_token_logprobs,
        residuals,
    )
    from refcal.recal.direction.receipt import RECEIPT_NAME, DirectionReceipt
    from refcal.recal.direction.save import save_edited
    from refcal.recal.direction.search import DirectionOutcome, run_direction
    from refcal.recal.direction.settings import ChoiceRule, Mode, SearchSettings
    from refcal.recal.direction.split import BenchSplit, split_bench
    from refcal.recal.direction.trials import Evaluation, SearchPlan, SearchReport, TrialRecord, read_report


def __getattr__(name: str) -> Any:
    """Resolve a public name on first use, importing only the module that defines it."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refcal.recal.direction' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
