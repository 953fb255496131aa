"""The output folder of an SFT run and resuming: the run plan (`checkpoints/run.json`) a later start must match,
and the complete checkpoints it resumes from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from refcal.recal.receipt import RECEIPT_NAME
from refcal.recal.sft.errors import TrainingSetupError
from refcal.recal.sft.settings import SFTSettings
from refcal.targets.base import Fingerprint

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
CONTRASTIVE_DIR = "contrastive"
CHECKPOINT_PREFIX = "checkpoint-"


class RunPlan(BaseModel):
    """What a training run in an output folder was started with (`OUT/checkpoints/run.json`); a later start
    resumes only when all of it is unchanged."""

    base_fingerprint: Fingerprint
    corpus_digest: str
    pairs_digest: str | None
    settings: SFTSettings


RUNTIME_ONLY = {"settings": {"cpu_threads"}}
"""Settings that do not change what is learnt (the loss curve is the same with 1 or 2 threads): a resumed start
may change them."""


def complete_checkpoints(checkpoints: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoint folders, each sorted by step. Complete means its `trainer_state.json`,
    written last by the trainer, parses and names the folder's step."""
    complete, incomplete = [], []
    folders = [path for path in checkpoints.glob(f"{CHECKPOINT_PREFIX}*") if path.is_dir()
               and path.name.removeprefix(CHECKPOINT_PREFIX).isdigit()] if checkpoints.is_dir() else []
    for folder in sorted(folders, key=lambda path: int(path.name.removeprefix(CHECKPOINT_PREFIX))):
        try:
            state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
            done = state["global_step"] == int(folder.name.removeprefix(CHECKPOINT_PREFIX))
        except (OSError, ValueError, KeyError, TypeError):
            done = False
        (complete if done else incomplete).append(folder)
    return complete, incomplete


def check_output(out: Path, plan: RunPlan) -> Path | None:
    """The checkpoint to resume from (None for a fresh start); TrainingSetupError when `out` holds a finished
    training, another run, or files that are not a training run's."""
    if (out / RECEIPT_NAME).exists():
        raise TrainingSetupError(f"{out} already holds a finished training ({RECEIPT_NAME}); choose another --out")
    if out.exists() and not out.is_dir():
        raise TrainingSetupError(f"{out} is a file; --out names a folder")
    run_file = out / CHECKPOINTS / RUN_FILE
    if not run_file.exists():
        if out.exists() and any(out.iterdir()):
            raise TrainingSetupError(f"{out} is not empty and holds no training run to resume; choose another --out")
        return None
    try:
        previous = RunPlan.model_validate_json(run_file.read_bytes())
    except ValidationError as error:
        raise TrainingSetupError(f"{run_file} cannot be read ({error.errors()[0]['msg']}); choose another --out") \
            from None
    differences = _differences(previous.model_dump(mode="json", exclude=RUNTIME_ONLY),
                               plan.model_dump(mode="json", exclude=RUNTIME_ONLY))
    if differences:
        raise TrainingSetupError(f"{out} holds a run started with other inputs ({', '.join(differences)} changed); "
                                 "resume with the same base, corpus and settings, or choose another --out")
    complete, _ = complete_checkpoints(out / CHECKPOINTS)
    return complete[-1] if complete else None


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [difference for key in sorted(old.keys() | new.keys())
                for difference in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if old != new else []
