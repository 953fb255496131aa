"""The Optuna search over direction edits: two objectives, KL as a constraint, a Pareto front, one choice.

Each trial samples an edit (`refcal.recal.direction`: layers through a kernel, strength, direction, and for
conditional steering the condition layer and threshold), applies it to the loaded base, generates short greedy
replies to the held-out half of the bench and has refcal's cascade judge them. The two objectives are the refusal
rate on held-out must-refuse items (up) and the false-refusal rate on held-out look-alikes (down); undetermined
verdicts are left out of both, as in every refcal metric, and counted.

KL is a **constraint**, not a penalty: KL(base ‖ edited) of the first-token distribution on harmless instructions
the directions never saw (heretic's measure). heretic PR #210 adds false refusals into its KL objective
(`kld_score += 0.5 · false_refusals / good_prompts`) because it has only two slots and spends one on refusals; here
false refusal has its own objective, so KL stays what it is and a trial above `max_kl` is infeasible: the TPE
sampler is told so (`Trial.set_constraint`, Optuna ≥ 5) and the front leaves it out.

The bench is split once, deterministically (by pair, within each class, ordered by a seeded hash) into an
extraction part, from which the directions come, and an evaluation part, on which trials are scored; the split is
recorded. Everything lands in the output folder as it happens, so a killed search resumes where it stopped:

    OUT/search.json               the plan: base, bench digest, split, study-defining settings, judge version
    OUT/directions.safetensors    the directions of the extraction part
    OUT/study.db                  the Optuna study (SQLite)
    OUT/baseline.json             the unedited base on the evaluation part
    OUT/trials.json               every finished trial: edit, rates with Wilson intervals, KL, seconds; the front
    OUT/pareto.html               the front, interactive (plotly, inline, no network)
    OUT/model/                    the chosen edit saved (load it as hf:OUT/model)
    OUT/direction-receipt.json    written last
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from refcal import __version__
from refcal.bench import Bench, Item, load_bench
from refcal.clock import utc_now
from refcal.errors import MissingExtraError
from refcal.files import write_atomic
from refcal.judges import make_judge
from refcal.metrics.rates import Rate, wilson
from refcal.recal.direction import (
    HARMLESS_INSTRUCTIONS,
    MODEL_DIR,
    Ablation,
    BaseWeights,
    Condition,
    Directions,
    Edit,
    Kernel,
    SavedAs,
    Steering,
    ablated,
    extract_directions,
    generate,
    kl_divergence,
    load_base,
    next_token_logprobs,
    resolve_base,
    save_directions,
    save_edited,
    steering_plan,
)
from refcal.recal.readiness import ReadinessGate
from refcal.targets.base import Fingerprint
from refcal.targets.hf import HFTarget
from refcal.targets.steering import DirectionError, SteeringHooks
from refcal.targets.weights import cpu_threads, weights_digest

if TYPE_CHECKING:
    from refcal.judges.cascade import CascadeJudge

INSTALL_HINT = "pip install torch==2.13.0 && pip install 'refcal[recal]'"
SCHEMA_VERSION = 1
STUDY_NAME = "direction"
Mode = Literal["ablate", "steer", "conditional"]
Stage = Literal["load", "directions", "baseline", "trial", "save"]
Progress = Callable[[Stage, int, int, str], None]
"""Told (stage, done, total, note) as the run advances; a resumed search starts its trials above 0."""


class SearchSettings(BaseModel):
    """How the search runs. `trials`, `batch_size` and `threads` may change between starts of one search; the
    rest define the study, and a resume with other values is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "conditional"
    """`ablate` lowers refusals (over-refusal); `steer` raises them everywhere; `conditional` raises them only
    where the condition direction recognises a harmful request."""
    trials: int = Field(default=40, ge=0)
    """Finished trials the study should hold; a resumed study runs only the missing ones (0: choose again)."""
    seed: int = 0
    """Seeds the bench split and the sampler."""
    extraction_share: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Share of each class's pairs that feed the directions; the rest score the trials."""
    harmless_prompts: int = Field(default=24, ge=2, le=24)
    """Built-in harmless instructions used for the refusal direction, and as many other ones for KL."""
    max_new_tokens: int = Field(default=48, ge=1, le=512)
    """Reply length judged per trial: refusals sit in the opening."""
    startup_trials: int = Field(default=10, ge=1)
    """Random trials before TPE models the objectives."""
    max_kl: float = Field(default=0.5, gt=0.0)
    """The KL constraint: trials above it are infeasible."""
    batch_size: int = Field(default=16, ge=1)
    threads: int | None = Field(default=None, ge=1)
    """torch CPU threads (None: torch's default)."""

    def study_key(self) -> dict[str, Any]:
        return self.model_dump(include={"mode", "seed", "extraction_share", "harmless_prompts", "max_new_tokens",
                                        "startup_trials"})


class ChoiceRule(BaseModel):
    """Which front trial to apply: the highest refusal rate among those with false refusal ≤ `max_false_refusal`
    and KL ≤ `max_kl` (point estimates; the intervals are in trials.json); ties go to lower false refusal, then
    lower KL, then the earlier trial. No trial qualifying means nothing is saved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_false_refusal: float = Field(default=0.10, ge=0.0, le=1.0)
    max_kl: float = Field(default=0.5, gt=0.0)


# The bench split.

class BenchSplit(BaseModel):
    """Item ids of the extraction and evaluation parts."""

    seed: int
    share: float
    extraction: list[str]
    evaluation: list[str]


def usable_items(bench: Bench) -> list[Item]:
    """Items the search can use: must-refuse and benign ones (grounded items are scored another way)."""
    return [item for item in bench.items if item.expect in ("refuse", "comply") and not item.grounded]


def split_bench(items: Sequence[Item], share: float, seed: int) -> BenchSplit:
    """Pairs stay together and each class is split on its own: its groups are ordered by a seeded hash and the
    first `share` of them (at least one, and at least one left, when there are two) go to extraction."""
    by_id = {item.id: item for item in items}
    groups: dict[str, dict[str, list[str]]] = {}
    for item in items:
        key = min(item.id, item.pair) if item.pair in by_id else item.id
        groups.setdefault(item.klass, {}).setdefault(key, []).append(item.id)
    extraction: list[str] = []
    evaluation: list[str] = []
    for klass in sorted(groups):
        keys = sorted(groups[klass], key=lambda key: hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest())
        count = round(len(keys) * share)
        if len(keys) >= 2:
            count = min(max(count, 1), len(keys) - 1)
        for position, key in enumerate(keys):
            (extraction if position < count else evaluation).extend(sorted(groups[klass][key]))
    return BenchSplit(seed=seed, share=share, extraction=extraction, evaluation=evaluation)


# The plan, fixed at the first start.

class SearchPlan(BaseModel):
    """`search.json`: what defines a search; a later start on the same folder must match it."""

    schema_version: int = SCHEMA_VERSION
    base: str
    base_fingerprint: Fingerprint
    bench: str
    bench_digest: str
    settings: dict[str, Any]
    """The study-defining settings (SearchSettings.study_key)."""
    judge: str
    """The judge version: another judge would score the same replies differently."""
    harmless_digest: str
    """sha256 of the built-in harmless instructions used."""
    split: BenchSplit
    created_at: str

    def differences(self, other: SearchPlan) -> list[str]:
        """What differs from `other`, named for a message: base weights (not the spelling of their path), bench,
        each study-defining setting, judge, harmless instructions, split."""
        changed = [f"setting {key}" for key in sorted(self.settings.keys() | other.settings.keys())
                   if self.settings.get(key) != other.settings.get(key)]
        pairs = {"base weights": (self.base_fingerprint.weights_digest, other.base_fingerprint.weights_digest),
                 "bench": (self.bench_digest, other.bench_digest), "judge": (self.judge, other.judge),
                 "harmless instructions": (self.harmless_digest, other.harmless_digest),
                 "split": (self.split, other.split)}
        return changed + [name for name, (mine, theirs) in pairs.items() if mine != theirs]


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
    harmless = "\n".join(HARMLESS_INSTRUCTIONS[:2 * settings.harmless_prompts])
    plan = SearchPlan(base=base, base_fingerprint=fingerprint, bench=loaded.name, bench_digest=loaded.digest,
                      settings=settings.study_key(), judge=judge.version,
                      harmless_digest="sha256:" + hashlib.sha256(harmless.encode()).hexdigest(), split=split,
                      created_at=utc_now())
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


# Records.

class Evaluation(BaseModel):
    """One model (the base or an edit) on the evaluation part."""

    refusal: Rate
    """Refusal and partial refusal on must-refuse items (undetermined left out)."""
    false_refusal: Rate
    """Refusal and partial refusal on look-alikes (undetermined left out)."""
    undetermined: int
    kl: float
    """KL(base ‖ this) of the first-token distribution on held-out harmless instructions."""
    seconds: float


class TrialRecord(BaseModel):
    number: int
    edit: Edit
    evaluation: Evaluation


class SearchReport(BaseModel):
    """`trials.json`."""

    mode: Mode
    rule: ChoiceRule
    baseline: Evaluation | None
    trials: list[TrialRecord]
    front: list[int]
    """Trial numbers on the feasible Pareto front."""
    chosen: int | None
    """The trial the rule picks (None: no trial meets the bounds)."""


def _scored(record: TrialRecord) -> bool:
    return record.evaluation.refusal.value is not None and record.evaluation.false_refusal.value is not None


def dominates(first: TrialRecord, second: TrialRecord) -> bool:
    """At least as much refusal and as little false refusal, and better on one."""
    a, b = first.evaluation, second.evaluation
    assert a.refusal.value is not None and a.false_refusal.value is not None
    assert b.refusal.value is not None and b.false_refusal.value is not None
    return (a.refusal.value >= b.refusal.value and a.false_refusal.value <= b.false_refusal.value
            and (a.refusal.value > b.refusal.value or a.false_refusal.value < b.false_refusal.value))


def pareto_front(records: Sequence[TrialRecord], max_kl: float) -> list[TrialRecord]:
    """The feasible (KL ≤ max_kl), scored trials no other feasible trial dominates, by false refusal then
    refusal (highest first)."""
    feasible = [record for record in records if _scored(record) and record.evaluation.kl <= max_kl]
    front = [record for record in feasible if not any(dominates(other, record) for other in feasible)]
    return sorted(front, key=lambda record: (record.evaluation.false_refusal.value,
                                             -(record.evaluation.refusal.value or 0.0), record.number))


def choose(front: Sequence[TrialRecord], rule: ChoiceRule) -> TrialRecord | None:
    """The trial to apply under `rule` (see ChoiceRule), or None."""
    eligible = [record for record in front if _scored(record)
                and (record.evaluation.false_refusal.value or 0.0) <= rule.max_false_refusal
                and record.evaluation.kl <= rule.max_kl]
    if not eligible:
        return None
    return max(eligible, key=lambda record: (record.evaluation.refusal.value, -(record.evaluation.false_refusal.value
                                             or 0.0), -record.evaluation.kl, -record.number))


# The search space.

def suggest_edit(trial: Any, mode: Mode, layers: int) -> Ablation | Steering:
    """Sample an edit. Ranges follow heretic's (direction position in 40–90 % of the depth, kernel width from one
    layer to 60 % of the depth, min weight as a share of the max), widened to start at zero for ablation since
    calibration wants partial edits, and scaled for steering, whose unit is a layer's harmful-harmless distance
    (on SmolLM2-135M a peak of 0.2 over ~12 layers already costs KL ≈ 0.65 unconditionally)."""
    last = layers - 1
    scope = trial.suggest_categorical("direction_scope", ["global", "per layer"])
    # Always sampled, because multivariate TPE does not support conditional parameters.
    index = trial.suggest_float("direction_index", 0.4 * last, 0.9 * last)
    direction_index = index if scope == "global" else None

    def kernel(prefix: str, low: float, high: float, peak_low: float) -> Kernel:
        peak_weight = max(0.0, trial.suggest_float(f"{prefix}.max_weight", low, high))
        return Kernel(max_weight=peak_weight, peak=trial.suggest_float(f"{prefix}.peak", peak_low * last, last),
                      min_weight=trial.suggest_float(f"{prefix}.min_weight", 0.0, 1.0) * peak_weight,
                      width=trial.suggest_float(f"{prefix}.width", 1.0, max(0.6 * last, 1.0)))

    if mode == "ablate":
        # The MLP's negative lower bound, clamped to zero, lets the sampler switch it off (heretic issue #202).
        return Ablation(direction_index=direction_index, attention=kernel("attention", 0.0, 1.5, 0.3),
                        mlp=kernel("mlp", -0.25, 1.5, 0.3))
    steering_kernel = kernel("steer", 0.0, 0.4, 0.3)
    if mode == "steer":
        return Steering(direction_index=direction_index, kernel=steering_kernel)
    condition = Condition(layer=trial.suggest_int("condition.layer", round(0.3 * last), round(0.75 * last)),
                          threshold=trial.suggest_float("condition.threshold", -0.1, 0.4))
    return Steering(direction_index=direction_index, kernel=steering_kernel, condition=condition)


# Evaluating an edit.

@dataclass
class Session:
    """The loaded base, its directions and the prompt sets, shared by every trial."""

    model: Any
    tokenizer: Any
    directions: Directions
    judge: CascadeJudge
    refuse: list[tuple[str, list[dict[str, str]]]]
    """(prompt as judged, chat) of held-out must-refuse items."""
    comply: list[tuple[str, list[dict[str, str]]]]
    kl_chats: list[list[dict[str, str]]]
    base_logprobs: Any
    settings: SearchSettings


@contextlib.contextmanager
def applied(session: Session, edit: Ablation | Steering | None) -> Iterator[None]:
    """The base with `edit` for the block, unedited after."""
    if edit is None:
        yield
    elif isinstance(edit, Ablation):
        with ablated(session.model, session.directions, edit):
            yield
    else:
        with SteeringHooks(session.model, steering_plan(session.directions, edit)):
            yield


def evaluate(session: Session, edit: Ablation | Steering | None) -> Evaluation:
    """KL on the harmless set, then greedy replies to the held-out items judged by the cascade."""
    started = time.perf_counter()
    settings = session.settings
    chats = [chat for _, chat in session.refuse + session.comply]
    with applied(session, edit):
        kl = kl_divergence(session.base_logprobs, next_token_logprobs(session.model, session.tokenizer,
                                                                      session.kl_chats, settings.batch_size))
        replies = generate(session.model, session.tokenizer, chats, settings.max_new_tokens, settings.batch_size)
    prompts = [prompt for prompt, _ in session.refuse + session.comply]
    verdicts = session.judge.judge_many(list(zip(prompts, replies, strict=True)))
    refuse_labels = [verdict.label for verdict in verdicts[:len(session.refuse)]]
    comply_labels = [verdict.label for verdict in verdicts[len(session.refuse):]]
    return Evaluation(refusal=_refusal_rate(refuse_labels), false_refusal=_refusal_rate(comply_labels),
                      undetermined=sum(label == "undetermined" for label in refuse_labels + comply_labels),
                      kl=round(kl, 6), seconds=round(time.perf_counter() - started, 2))


def _refusal_rate(labels: Sequence[str]) -> Rate:
    judged = [label for label in labels if label != "undetermined"]
    return wilson(sum(label in ("refusal", "partial_refusal") for label in judged), len(judged))


# The run.

@dataclass(frozen=True)
class DirectionOutcome:
    report: SearchReport
    receipt: DirectionReceipt | None
    """None when no trial met the rule's bounds (nothing was saved)."""


def run_direction(job: DirectionJob, progress: Progress | None = None) -> DirectionOutcome:
    """Load, extract, measure the base, run the missing trials, choose, save and write the receipt."""
    tell = progress or (lambda stage, done, total, note: None)
    started_at, clock = utc_now(), time.perf_counter()
    timings: dict[str, float] = {}
    job.out.mkdir(parents=True, exist_ok=True)
    write_atomic(job.out / "search.json", job.plan.model_dump_json(indent=2) + "\n")
    with cpu_threads(job.settings.threads):
        session = _open_session(job, tell, timings)
        baseline = _baseline(job, session, tell, timings)
        records = _search(job, session, baseline, tell, timings)
        report = write_report(job.out, job.settings.mode, job.rule, baseline, records)
        chosen = next((record for record in records if record.number == report.chosen), None)
        if chosen is None:
            return DirectionOutcome(report=report, receipt=None)
        earlier = _earlier_receipt(job.out)
        if earlier is not None and earlier.chosen.number == chosen.number:
            saved_as = earlier.saved_as  # a resume that chose the same trial: the model on disk is it
        else:
            (job.out / RECEIPT_NAME).unlink(missing_ok=True)  # it would vouch for the model about to be replaced
            tell("save", 0, 1, f"trial {chosen.number}")
            saved_at = time.perf_counter()
            saved_as = save_edited(session.model, session.tokenizer, session.directions, chosen.edit, job.out)
            timings["save"] = round(time.perf_counter() - saved_at, 2)
            tell("save", 1, 1, saved_as)
    timings["total"] = round(time.perf_counter() - clock, 2)
    receipt = _receipt(job, report, chosen, baseline, saved_as, timings, started_at)
    write_atomic(job.out / RECEIPT_NAME, receipt.model_dump_json(indent=2) + "\n")
    return DirectionOutcome(report=report, receipt=receipt)


def _open_session(job: DirectionJob, tell: Progress, timings: dict[str, float]) -> Session:
    tell("load", 0, 1, job.base.spec)
    clock = time.perf_counter()
    model, tokenizer = load_base(job.base)
    timings["load"] = round(time.perf_counter() - clock, 2)
    tell("load", 1, 1, job.base.spec)
    by_id = {item.id: item for item in job.bench.items}

    def chats(part: list[str], expect: str) -> list[tuple[str, list[dict[str, str]]]]:
        return [(by_id[item_id].prompt, [message.model_dump() for message in by_id[item_id].messages])
                for item_id in part if by_id[item_id].expect == expect]

    count = job.settings.harmless_prompts
    harmless = [[{"role": "user", "content": text}] for text in HARMLESS_INSTRUCTIONS[:2 * count]]
    tell("directions", 0, 1, f"{len(job.plan.split.extraction)} items, {count} harmless instructions")
    clock = time.perf_counter()
    directions = extract_directions(model, tokenizer, [chat for _, chat in chats(job.plan.split.extraction, "refuse")],
                                    harmless[:count], [chat for _, chat in chats(job.plan.split.extraction, "comply")],
                                    job.settings.batch_size)
    save_directions(directions, job.out / "directions.safetensors")
    base_logprobs = next_token_logprobs(model, tokenizer, harmless[count:], job.settings.batch_size)
    timings["directions"] = round(time.perf_counter() - clock, 2)
    tell("directions", 1, 1, f"{directions.layers} layers")
    return Session(model=model, tokenizer=tokenizer, directions=directions, judge=job.judge,
                   refuse=chats(job.plan.split.evaluation, "refuse"), comply=chats(job.plan.split.evaluation, "comply"),
                   kl_chats=harmless[count:], base_logprobs=base_logprobs, settings=job.settings)


def _baseline(job: DirectionJob, session: Session, tell: Progress, timings: dict[str, float]) -> Evaluation:
    """The unedited base on the evaluation part, measured once per folder."""
    path = job.out / "baseline.json"
    if path.exists():
        return Evaluation.model_validate_json(path.read_bytes())
    tell("baseline", 0, 1, "the unedited base")
    baseline = evaluate(session, None)
    write_atomic(path, baseline.model_dump_json(indent=2) + "\n")
    timings["baseline"] = baseline.seconds
    tell("baseline", 1, 1, _summary(baseline))
    return baseline


def _summary(evaluation: Evaluation) -> str:
    return (f"refusal {_percent(evaluation.refusal)}, false refusal {_percent(evaluation.false_refusal)}, "
            f"KL {evaluation.kl:.3f}, {evaluation.seconds:.0f}s")


def _percent(rate: Rate) -> str:
    return "–" if rate.value is None else f"{rate.value:.0%}"


def _search(job: DirectionJob, session: Session, baseline: Evaluation, tell: Progress,
            timings: dict[str, float]) -> list[TrialRecord]:
    """Run trials until the study holds `settings.trials` finished ones, writing the report after each."""
    import optuna

    study = open_study(job.out, job.settings)
    records = records_from_study(study)
    finished = len([trial for trial in study.trials if trial.state.is_finished()
                    and trial.state != optuna.trial.TrialState.FAIL])
    clock = time.perf_counter()
    tell("trial", finished, max(job.settings.trials, finished), "resuming" if finished else "")
    while finished < job.settings.trials:
        trial = study.ask()
        edit = suggest_edit(trial, job.settings.mode, session.directions.layers)
        trial.set_user_attr("edit", edit.model_dump(mode="json"))
        try:
            evaluation = evaluate(session, edit)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        trial.set_user_attr("evaluation", evaluation.model_dump(mode="json"))
        trial.set_constraint("kl", evaluation.kl - job.settings.max_kl)  # feasible at zero or below
        record = TrialRecord(number=trial.number, edit=edit, evaluation=evaluation)
        if _scored(record):
            study.tell(trial, [evaluation.refusal.value, evaluation.false_refusal.value])
            records.append(record)
        else:  # every reply undetermined: there is nothing to score
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        finished += 1
        write_report(job.out, job.settings.mode, job.rule, baseline, records)
        tell("trial", finished, job.settings.trials, f"trial {trial.number}: {_summary(evaluation)}")
    timings["search"] = round(time.perf_counter() - clock, 2)
    return records


def open_study(out: Path, settings: SearchSettings) -> Any:
    """The study in `out/study.db`, created or loaded; trials left running by a killed start are marked failed."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=settings.seed, multivariate=True,
                                             n_startup_trials=settings.startup_trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{out / 'study.db'}", study_name=STUDY_NAME,
                                directions=["maximize", "minimize"], sampler=sampler, load_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return study


def records_from_study(study: Any) -> list[TrialRecord]:
    """Complete trials as records, from what each stored in its user attributes."""
    import optuna

    records = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if "edit" in trial.user_attrs and "evaluation" in trial.user_attrs:
            records.append(TrialRecord(number=trial.number, edit=trial.user_attrs["edit"],
                                       evaluation=trial.user_attrs["evaluation"]))
    return records


def write_report(out: Path, mode: Mode, rule: ChoiceRule, baseline: Evaluation | None,
                 records: Sequence[TrialRecord]) -> SearchReport:
    """Write `trials.json` and `pareto.html` for the trials so far."""
    front = pareto_front(records, rule.max_kl)
    chosen = choose(front, rule)
    report = SearchReport(mode=mode, rule=rule, baseline=baseline, trials=list(records),
                          front=[record.number for record in front],
                          chosen=chosen.number if chosen is not None else None)
    write_atomic(out / "trials.json", report.model_dump_json(indent=2) + "\n")
    write_atomic(out / "pareto.html", pareto_page(report))
    return report


# The receipt.

RECEIPT_NAME = "direction-receipt.json"


class DirectionReceipt(BaseModel):
    """`direction-receipt.json`: one direction edit, from base to saved model."""

    schema_version: int = SCHEMA_VERSION
    refcal_version: str = __version__
    kind: Literal["direction"] = "direction"
    plan: SearchPlan
    settings: SearchSettings
    rule: ChoiceRule
    readiness: ReadinessGate | None = None
    """The readiness gate's word on the base (see TrainingReceipt.readiness)."""
    baseline: Evaluation
    chosen: TrialRecord
    trials: int
    """Scored trials in the study."""
    front: list[int]
    saved_as: SavedAs
    """`weights`: edited projections; `bias`: steering as down_proj biases (`mlp_bias`); `steering-file`:
    `steering.json` + `steering.safetensors` that the loader must attach."""
    output: str
    """The folder to load as `hf:OUTPUT`."""
    weights_digest: str
    wall_time_s: dict[str, float]
    """Seconds per stage of the last start (`load`, `directions`, `baseline`, `search`, `save`) and `total`."""
    libraries: dict[str, str]
    started_at: str
    finished_at: str


def _earlier_receipt(out: Path) -> DirectionReceipt | None:
    """The receipt of an earlier start whose model is still in place, if any."""
    path = out / RECEIPT_NAME
    if not path.exists() or not (out / MODEL_DIR / "config.json").exists():
        return None
    return DirectionReceipt.model_validate_json(path.read_bytes())


def _receipt(job: DirectionJob, report: SearchReport, chosen: TrialRecord, baseline: Evaluation, saved_as: SavedAs,
             timings: dict[str, float], started_at: str) -> DirectionReceipt:
    libraries = {}
    for name in ("torch", "transformers", "optuna", "plotly"):
        try:
            libraries[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libraries[name] = "not installed"
    output = job.out / MODEL_DIR
    return DirectionReceipt(plan=job.plan, settings=job.settings, rule=job.rule, baseline=baseline, chosen=chosen,
                            trials=len(report.trials), front=report.front, saved_as=saved_as,
                            output=str(output), weights_digest=weights_digest(output), wall_time_s=timings,
                            libraries=libraries, started_at=started_at, finished_at=utc_now(),
                            readiness=job.readiness)


# Plots.

SVG_WIDTH, SVG_HEIGHT, MARGIN = 420, 320, 44


def pareto_fragment(report: SearchReport) -> str:
    """The front as an inline SVG `<figure>` (no scripts, so the drill report stays script-free): x false refusal,
    y refusal; grey trials, infeasible ones hollow, the front joined in blue, the base a black square, the chosen
    trial ringed in red. Each point's tooltip gives its rates with intervals and KL."""
    span_x, span_y = SVG_WIDTH - 2 * MARGIN, SVG_HEIGHT - 2 * MARGIN

    def position(evaluation: Evaluation) -> tuple[float, float]:
        return (MARGIN + (evaluation.false_refusal.value or 0.0) * span_x,
                SVG_HEIGHT - MARGIN - (evaluation.refusal.value or 0.0) * span_y)

    parts = [f'<rect x="{MARGIN}" y="{MARGIN}" width="{span_x}" height="{span_y}" fill="none" stroke="#999"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, y = MARGIN + tick * span_x, SVG_HEIGHT - MARGIN - tick * span_y
        parts.append(f'<text x="{x:.0f}" y="{SVG_HEIGHT - MARGIN + 14}" font-size="10" text-anchor="middle">'
                     f'{tick:.0%}</text><text x="{MARGIN - 4}" y="{y + 3:.0f}" font-size="10" text-anchor="end">'
                     f'{tick:.0%}</text>')
    parts.append(f'<text x="{SVG_WIDTH / 2:.0f}" y="{SVG_HEIGHT - 8}" font-size="11" text-anchor="middle">false '
                 f'refusal on look-alikes</text><text x="12" y="{SVG_HEIGHT / 2:.0f}" font-size="11" '
                 f'text-anchor="middle" transform="rotate(-90 12 {SVG_HEIGHT / 2:.0f})">refusal on must-refuse</text>')
    front = [record for number in report.front for record in report.trials if record.number == number]
    if len(front) > 1:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (position(record.evaluation) for record in front))
        parts.append(f'<polyline points="{points}" fill="none" stroke="#2563eb" stroke-width="1.5"/>')
    for record in report.trials:
        if not _scored(record):
            continue
        x, y = position(record.evaluation)
        feasible = record.evaluation.kl <= report.rule.max_kl
        colour = "#2563eb" if record.number in report.front else "#9ca3af"
        fill = colour if feasible else "none"
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{colour}">'
                     f'<title>{escape(evaluation_text(f"trial {record.number}", record.evaluation))}</title></circle>')
        if record.number == report.chosen:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="#dc2626" stroke-width="2"/>')
    if report.baseline is not None and report.baseline.refusal.value is not None:
        x, y = position(report.baseline)
        parts.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="#111">'
                     f'<title>{escape(evaluation_text("base", report.baseline))}</title></rect>')
    title = f"Direction search ({report.mode}): {len(report.trials)} trials, KL ≤ {report.rule.max_kl:g}"
    return (f'<figure class="pareto"><svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" '
            f'height="{SVG_HEIGHT}" role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>'
            f'<figcaption>{escape(title)}</figcaption></figure>')


def evaluation_text(name: str, evaluation: Evaluation) -> str:
    """A trial's (or the base's) rates with intervals and counts, and its KL: for tooltips and the terminal."""
    def interval(rate: Rate) -> str:
        if rate.value is None:
            return "–"
        return f"{rate.value:.0%} [{rate.ci_low:.0%}, {rate.ci_high:.0%}] ({rate.k}/{rate.n})"

    return (f"{name}: refusal {interval(evaluation.refusal)}, false refusal {interval(evaluation.false_refusal)}, "
            f"KL {evaluation.kl:.3f}")


def pareto_page(report: SearchReport) -> str:
    """A whole HTML page with an interactive plotly chart (plotly.js inline: the page needs no network), the
    intervals as error bars, and every trial's edit in its hover text."""
    import plotly.graph_objects as graph

    figure = graph.Figure()
    scored = [record for record in report.trials if _scored(record)]

    def trace(name: str, evaluations: Sequence[Evaluation], labels: Sequence[str], **style: Any) -> None:
        figure.add_trace(graph.Scatter(
            x=[evaluation.false_refusal.value for evaluation in evaluations],
            y=[evaluation.refusal.value for evaluation in evaluations], name=name, text=list(labels),
            hoverinfo="text", error_x=_error_bars([evaluation.false_refusal for evaluation in evaluations]),
            error_y=_error_bars([evaluation.refusal for evaluation in evaluations]), **style))

    def label(record: TrialRecord) -> str:
        edit = escape(json.dumps(record.edit.model_dump(mode="json"), indent=1)).replace("\n", "<br>")
        return f"{escape(evaluation_text(f'trial {record.number}', record.evaluation))}<br>{edit}"

    for name, group, style in (
            ("infeasible (KL above bound)", [r for r in scored if r.evaluation.kl > report.rule.max_kl],
             {"mode": "markers", "marker": {"color": "#9ca3af", "symbol": "circle-open"}}),
            ("trials", [r for r in scored if r.evaluation.kl <= report.rule.max_kl and r.number not in report.front],
             {"mode": "markers", "marker": {"color": "#9ca3af"}}),
            ("Pareto front", [r for number in report.front for r in scored if r.number == number],
             {"mode": "lines+markers", "marker": {"color": "#2563eb"}}),
            ("chosen", [r for r in scored if r.number == report.chosen],
             {"mode": "markers", "marker": {"color": "#dc2626", "size": 14, "symbol": "circle-open"}})):
        trace(name, [record.evaluation for record in group], [label(record) for record in group], **style)
    if report.baseline is not None and report.baseline.refusal.value is not None:
        trace("base", [report.baseline], [escape(evaluation_text("base", report.baseline))], mode="markers",
              marker={"color": "#111", "symbol": "square", "size": 10})
    figure.update_layout(title=f"Direction search ({report.mode}): refusal vs false refusal, KL ≤ "
                               f"{report.rule.max_kl:g}", template="plotly_white",
                         xaxis={"title": "false refusal on look-alikes", "range": [-0.05, 1.05], "tickformat": ".0%"},
                         yaxis={"title": "refusal on must-refuse", "range": [-0.05, 1.05], "tickformat": ".0%"})
    return figure.to_html(full_html=True, include_plotlyjs=True, include_mathjax=False)


def _error_bars(rates: Sequence[Rate]) -> dict[str, Any]:
    """Asymmetric plotly error bars from Wilson intervals."""
    return {"type": "data", "symmetric": False, "thickness": 1,
            "array": [(rate.ci_high or 0.0) - (rate.value or 0.0) for rate in rates],
            "arrayminus": [(rate.value or 0.0) - (rate.ci_low or 0.0) for rate in rates]}


def read_report(path: Path) -> SearchReport:
    return SearchReport.model_validate_json(path.read_bytes())
