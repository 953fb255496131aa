"""Preparing a direction search: the base spec, extras, bench, split and output folder checked, and the plan
(`search.json`) fixed, before any weights are loaded; nothing is written."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from refcal.bench import Bench, load_bench
from refcal.clock import utc_now
from refcal.errors import MissingExtraError
from refcal.judges import make_judge
from refcal.recal.direction.base import resolve_base
from refcal.recal.direction.harmless import harmless_digest
from refcal.recal.direction.settings import ChoiceRule, SearchSettings
from refcal.recal.direction.split import split_bench, usable_items
from refcal.recal.direction.trials import SearchPlan
from refcal.recal.readiness import ReadinessGate
from refcal.targets.hf import HFTarget
from refcal.targets.steering import DirectionError
from refcal.targets.weights import BaseWeights

if TYPE_CHECKING:
    from refcal.judges.cascade import CascadeJudge

INSTALL_HINT = "pip install torch==2.13.0 && pip install 'refcal[recal]'"


@dataclass(frozen=True)
class DirectionJob:
    """Everything checked before any weights are loaded."""

    base: BaseWeights
    bench: Bench
    out: Path
    settings: SearchSettings
    rule: ChoiceRule
    plan: SearchPlan
    judge: CascadeJudge
    readiness: ReadinessGate | None = None


def check_extras(gguf: bool) -> None:
    """MissingExtraError naming every missing package that is imported late (optuna, plotly, gguf), before
    anything is loaded."""
    needed = ["torch", "transformers", "safetensors", "optuna", "plotly", *(["gguf"] if gguf else [])]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"direction editing needs {', '.join(missing)}: {INSTALL_HINT}")
    optuna_version = importlib.metadata.version("optuna")
    if int(optuna_version.split(".")[0]) < 5:  # Trial.set_constraint, which carries the KL constraint, is new in 5
        raise MissingExtraError(f"direction editing needs optuna>=5 (installed: {optuna_version}): {INSTALL_HINT}")


def prepare_direction(base: str, bench: str, out: Path, settings: SearchSettings | None = None,
                      rule: ChoiceRule | None = None, readiness: ReadinessGate | None = None) -> DirectionJob:
    """Check the base spec, extras, bench, split and output folder, and write nothing.

    Raises TargetSpecError (base spec or path), MissingExtraError, BenchError, DirectionError (a bench too small
    to split, a folder that holds another search).
    """
    settings = settings or SearchSettings()
    check_extras(base.endswith(".gguf") or base.startswith("llamacpp:"))
    weights = resolve_base(base)
    fingerprint = HFTarget(str(weights.path)).fingerprint
    loaded = load_bench(bench)
    split = split_bench(usable_items(loaded), settings.extraction_share, settings.seed)
    expects = {item.id: item.expect for item in loaded.items}
    for part in ("extraction", "evaluation"):
        sides = {expects[item_id] for item_id in getattr(split, part)}
        if sides != {"refuse", "comply"}:
            raise DirectionError(f"bench {loaded.name}: its {part} part needs must-refuse and benign items; the "
                                 f"bench has too few pairs to split at share {settings.extraction_share}")
    judge = make_judge("cascade")
    plan = SearchPlan(base=base, base_fingerprint=fingerprint, bench=loaded.name, bench_digest=loaded.digest,
                      settings=settings.study_key(), judge=judge.version,
                      harmless_digest=harmless_digest(settings.harmless_prompts), split=split, created_at=utc_now())
    if out.exists() and not out.is_dir():
        raise DirectionError(f"--out {out} is a file, not a folder")
    existing = out / "search.json"
    if existing.exists():
        earlier = SearchPlan.model_validate_json(existing.read_bytes())
        changed = earlier.differences(plan)
        if changed:
            raise DirectionError(f"{out} holds a search with another {', '.join(changed)}; use another --out, or "
                                 "the same options to resume it")
        plan = plan.model_copy(update={"created_at": earlier.created_at})
    return DirectionJob(base=weights, bench=loaded, out=out, settings=settings, rule=rule or ChoiceRule(),
                        plan=plan, judge=judge, readiness=readiness)
