"""The Optuna search over direction edits: two objectives, KL as a constraint, a Pareto front, one choice.

Each trial samples an edit (`edits`: layers through a kernel, strength, direction, and for
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

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refcal.clock import utc_now
from refcal.files import write_atomic
from refcal.metrics.rates import percent
from refcal.recal.direction.edits import Ablation, Condition, Kernel, Steering
from refcal.recal.direction.pareto import choose, pareto_front, scored
from refcal.recal.direction.plot import pareto_page
from refcal.recal.direction.prepare import DirectionJob
from refcal.recal.direction.receipt import RECEIPT_NAME, DirectionReceipt, direction_receipt, earlier_receipt
from refcal.recal.direction.save import save_edited
from refcal.recal.direction.session import Session, evaluate, open_session
from refcal.recal.direction.settings import ChoiceRule, Mode, Progress, SearchSettings
from refcal.recal.direction.trials import Evaluation, SearchReport, TrialRecord
from refcal.targets.weights import cpu_threads

STUDY_NAME = "direction"


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
        session = open_session(job, tell, timings)
        baseline = _baseline(job, session, tell, timings)
        records = _search(job, session, baseline, tell, timings)
        report = write_report(job.out, job.settings.mode, job.rule, baseline, records)
        chosen = next((record for record in records if record.number == report.chosen), None)
        if chosen is None:
            return DirectionOutcome(report=report, receipt=None)
        earlier = earlier_receipt(job.out)
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
    receipt = direction_receipt(job, report, chosen, baseline, saved_as, timings, started_at)
    write_atomic(job.out / RECEIPT_NAME, receipt.model_dump_json(indent=2) + "\n")
    return DirectionOutcome(report=report, receipt=receipt)


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
    return (f"refusal {percent(evaluation.refusal.value, 0)}, "
            f"false refusal {percent(evaluation.false_refusal.value, 0)}, "
            f"KL {evaluation.kl:.3f}, {evaluation.seconds:.0f}s")


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
        if scored(record):
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
