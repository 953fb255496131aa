"""The recalibration loop: readiness → baseline drills → corpus → train or edit → candidate drills → promotion.

Each stage writes `OUT/stages/NAME.json` when it finishes: its key (a digest of everything it read: settings,
the base's weights digest, upstream stages' outputs), wall time and outputs. Run again, a stage whose record
holds the same key and whose outputs are still in place is skipped; a changed input re-runs that stage and,
through the keys, every stage after it. Inside a stage, work resumes too: drills resume their runs in the store,
SFT resumes from its last checkpoint, the direction search from its Optuna study.

The gated benches are frozen (`refcal bench freeze`) and drilled twice with the same settings and the same engine
(transformers): the base before, the candidate after. The training bench (`[corpus] source`) is never gated. The
last stage runs `refcal promote`'s gates on the candidate with the baseline as `--baseline`, and the same gates on
the base alone, so the table shows what the base failed and what the candidate fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from refcal.bench import Bench, load_bench
from refcal.bench.freeze import check_frozen
from refcal.clock import utc_now
from refcal.errors import RefcalError
from refcal.files import canonical_json, file_sha256, write_atomic
from refcal.recal.loop_config import LoopConfig, direction_settings
from refcal.receipts import Receipt, read_receipt

STAGES = ("readiness", "baseline", "corpus", "train", "candidate", "promote")
Say = Callable[[str], None]


class LoopStopped(RefcalError):
    """The loop cannot go on (a base not ready, an empty corpus, no trial chosen); says why and what to do."""


class StageRecord(BaseModel):
    """`OUT/stages/NAME.json`: a finished stage, its inputs' key and what it produced."""

    stage: str
    key: str
    started_at: str
    finished_at: str
    wall_s: float
    outputs: dict[str, Any]


class StageRun(BaseModel):
    """What one invocation did with a stage: ran it, or skipped it as already done."""

    stage: str
    skipped: bool
    wall_s: float
    """This invocation's seconds (0 when skipped); the record holds the stage's own."""
    record: StageRecord


class GateRow(BaseModel):
    bench: str
    claim: str
    base_passed: bool
    base_figures: list[str]
    candidate_passed: bool
    candidate_figures: list[str]
    problems: list[str]


class LoopResult(BaseModel):
    stages: list[StageRun]
    promoted: bool
    rows: list[GateRow]
    out: str


def key_of(*parts: Any) -> str:
    """A stage key: sha256 of the canonical JSON of its inputs."""
    return hashlib.sha256(canonical_json(parts)).hexdigest()[:16]


class Stages:
    """The stage records of one loop folder."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "stages"

    def done(self, stage: str, key: str) -> StageRecord | None:
        path = self.folder / f"{stage}.json"
        if not path.is_file():
            return None
        record = StageRecord.model_validate_json(path.read_bytes())
        if record.key != key or not all(Path(value).exists() for value in _paths(record.outputs)):
            return None
        return record

    def write(self, record: StageRecord) -> None:
        write_atomic(self.folder / f"{record.stage}.json", record.model_dump_json(indent=2) + "\n")


def _paths(outputs: dict[str, Any]) -> list[str]:
    """Output values that are files or folders the stage wrote (keys ending in `_path` or `_dir`, or maps of them)."""
    found: list[str] = []
    for name, value in outputs.items():
        if name.endswith(("_path", "_dir")) and isinstance(value, str):
            found.append(value)
        elif name.endswith(("_paths", "_dirs")) and isinstance(value, dict):
            found += [item for item in value.values() if isinstance(item, str)]
    return found


def run_stage(stages: Stages, stage: str, key: str, work: Callable[[], dict[str, Any]], say: Say) -> StageRun:
    earlier = stages.done(stage, key)
    if earlier is not None:
        say(f"{stage}: done at {earlier.finished_at} ({earlier.wall_s:.0f} s), skipped")
        return StageRun(stage=stage, skipped=True, wall_s=0.0, record=earlier)
    say(f"{stage}: running")
    started_at, started = utc_now(), time.perf_counter()
    outputs = work()
    wall = time.perf_counter() - started
    record = StageRecord(stage=stage, key=key, started_at=started_at, finished_at=utc_now(), wall_s=round(wall, 2),
                         outputs=outputs)
    stages.write(record)
    say(f"{stage}: finished in {wall:.0f} s")
    return StageRun(stage=stage, skipped=False, wall_s=wall, record=record)


def run_loop(config: LoopConfig, say: Say = print, progress: Any = None) -> LoopResult:
    """Every stage of the loop, skipping the ones already done with the same inputs."""
    from refcal.targets.weights import base_digest

    assert config.out is not None
    out = config.out
    stages = Stages(out)
    loaded = {spec: load_bench(spec) for spec in [*config.benches, config.corpus.source]}
    for name in config.benches:  # a gated bench must be frozen and unchanged before anything runs
        if check_frozen(loaded[name], config.locks) is None:
            raise LoopStopped(f"bench '{name}' is not frozen in {config.locks}: freeze it before training "
                              f"(refcal bench freeze {name} --locks {config.locks})")
    base = base_digest(config.base)
    runs: list[StageRun] = []

    readiness_key = key_of("readiness", base, config.readiness)
    runs.append(run_stage(stages, "readiness", readiness_key, lambda: _readiness(config, out), say))
    readiness = runs[-1].record.outputs
    if not readiness["ready"] and not config.force:
        raise LoopStopped(f"{config.base} is not ready to recalibrate ({'; '.join(readiness['reasons'])}): fix the "
                          "base, or set force = true in the config")

    benches = [*config.benches, config.corpus.source]
    engine = same_engine(config.base)
    baseline_key = key_of("baseline", base, engine, config.drill, {name: loaded[name].digest for name in benches})
    runs.append(run_stage(stages, "baseline", baseline_key,
                          lambda: _drills(config, engine, [loaded[name] for name in benches],
                                          out / f"baseline-{baseline_key[:8]}"), say))
    baseline = runs[-1].record.outputs

    corpus_key = key_of("corpus", baseline_key, config.method, config.corpus)
    runs.append(run_stage(stages, "corpus", corpus_key,
                          lambda: _corpus(config, baseline, out / f"corpus-{corpus_key[:8]}"), say))
    corpus = runs[-1].record.outputs

    train_key = key_of("train", corpus_key, corpus.get("corpus_digest"), config.method, config.sft, config.direction,
                       config.force, config.allow_contamination)
    runs.append(run_stage(stages, "train", train_key,
                          lambda: _train(config, base, corpus, out / f"train-{train_key[:8]}", progress), say))
    model = runs[-1].record.outputs

    candidate_key = key_of("candidate", model["weights_digest"], config.drill, baseline_key)
    runs.append(run_stage(stages, "candidate", candidate_key,
                          lambda: _drills(config, f"hf:{model['model_dir']}", [loaded[name] for name in config.benches],
                                          out / f"candidate-{candidate_key[:8]}"), say))
    candidate = runs[-1].record.outputs

    promote_key = key_of("promote", candidate_key, file_sha256(config.gates), candidate["digests"],
                         baseline["digests"])
    runs.append(run_stage(stages, "promote", promote_key,
                          lambda: _promote(config, baseline, candidate, out), say))
    decision = runs[-1].record.outputs
    rows = [GateRow.model_validate(row) for row in decision["rows"]]
    _write_report(config, runs, rows, decision["promoted"], model)
    return LoopResult(stages=runs, promoted=decision["promoted"], rows=rows, out=str(out))


def same_engine(base: str) -> str:
    """The base as the candidate will be drilled: through transformers (`hf:`), so that a difference between
    baseline and candidate is the weights', not llama.cpp's numerics against transformers'. A `llamacpp:` base
    becomes `hf:` on the same GGUF file (the same weights digest)."""
    from refcal.targets.weights import base_location

    if not base.startswith("llamacpp:"):
        return base
    directory, gguf = base_location(base)
    return f"hf:{directory / gguf}" if gguf else f"hf:{directory}"


# Stages.

def _readiness(config: LoopConfig, out: Path) -> dict[str, Any]:
    from refcal.recal.readiness import check_readiness

    folder = out / "readiness"
    verdict, record = check_readiness(config.base, folder, config.store, lookalikes=config.readiness.lookalikes,
                                      max_tokens=config.readiness.max_tokens, limit=config.readiness.limit,
                                      concurrency=config.drill.concurrency)
    return {"ready": verdict.ready, "reasons": verdict.reasons, "readiness_path": str(folder / "readiness.json"),
            "record": str(record) if record else None}


def _drills(config: LoopConfig, target: str, benches: Sequence[Bench], folder: Path) -> dict[str, Any]:
    """One drill per bench (resumed when its folder already holds a run); receipts and their digests."""
    receipts, digests = {}, {}
    for bench in benches:
        name = bench.name
        drill_bench(config, target, bench, folder / name)
        receipts[name] = str(folder / name / "receipt.json")
        digests[name] = read_receipt(folder / name / "receipt.json").digest  # sealed when written
    return {"receipt_paths": receipts, "digests": digests}


def drill_bench(config: LoopConfig, target_spec: str, bench: Bench, out_dir: Path) -> Receipt:
    """Drill `target_spec` on a bench with the loop's drill settings and cascade judge, into `out_dir`; a run left
    there by an interrupted start is resumed, a finished one is read back."""
    from refcal.judges import make_judge
    from refcal.run.session import check_resumable, drill_async, find_run, new_run
    from refcal.store.runs import Store
    from refcal.targets import GenerationParams, make_target
    from refcal.targets.weights import cpu_threads

    settings = config.drill
    target = make_target(target_spec, params=GenerationParams(max_tokens=settings.max_tokens),
                         concurrency=settings.concurrency)
    judge = make_judge("cascade")
    with Store(config.store) as store:
        earlier = None
        if (out_dir / "run.json").is_file():
            earlier = find_run(store, str(out_dir))
            if earlier.status == "complete" and (out_dir / "receipt.json").is_file():
                return read_receipt(out_dir / "receipt.json")

        async def go() -> Receipt:
            async with target:
                if earlier is not None:
                    check_resumable(earlier, target, judge)
                    run = earlier
                else:
                    run = new_run(store, bench, target, judge, target_spec=target.description,
                                  out_root=out_dir.parent, out_dir=out_dir, limit=settings.limit,
                                  concurrency=settings.concurrency, locks=config.locks)
                return await drill_async(run, target, judge, store)

        with cpu_threads(config.threads):
            return asyncio.run(go())


def _corpus(config: LoopConfig, baseline: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The training corpus (sft) or the check of the training bench (direction), against every frozen bench."""
    from refcal.corpus import ContaminationOptions, check_corpus

    folder.mkdir(parents=True, exist_ok=True)
    source = load_bench(config.corpus.source)
    if config.method == "direction":
        prompts = folder / "direction-prompts.jsonl"
        write_atomic(prompts, "".join(json.dumps({"prompt": item.prompt}, ensure_ascii=False) + "\n"
                                      for item in source.items))
        report = check_corpus([prompts], locks=config.locks, options=ContaminationOptions(semantic="auto"))
        _stop_on_hits(config, report, f"the training bench '{source.name}'")
        return {"corpus_path": str(prompts), "corpus_digest": file_sha256(prompts), "rows": len(source.items),
                "contamination_hits": len(report.hits)}
    built, pairs = asyncio.run(_build_async(config, baseline, source))
    corpus = folder / "corpus.jsonl"
    write_atomic(corpus, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in built.rows))
    write_atomic(folder / "corpus.jsonl.rejects.jsonl",
                 "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in built.rejected))
    outputs: dict[str, Any] = {"corpus_path": str(corpus), "corpus_digest": file_sha256(corpus),
                               "rows": len(built.rows), "rejected": len(built.rejected),
                               "safety_rows": sum(row["provenance"].get("recipe") != "general"
                                                  and row["provenance"].get("mixed_from") != "general"
                                                  for row in built.rows)}
    if not built.rows:
        raise LoopStopped(f"the {config.corpus.recipe} corpus is empty ({len(built.rejected)} rejected, see "
                          f"{folder / 'corpus.jsonl.rejects.jsonl'})")
    files = [corpus]
    if pairs is not None:
        pairs_path = folder / "pairs.jsonl"
        write_atomic(pairs_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in pairs.rows))
        outputs |= {"pairs_path": str(pairs_path), "pairs": len(pairs.rows)}
    report = check_corpus(files, locks=config.locks, options=ContaminationOptions(semantic="auto"))
    _stop_on_hits(config, report, "the corpus")
    return outputs | {"contamination_hits": len(report.hits), "contamination_benches": report.benches}


def _stop_on_hits(config: LoopConfig, report: Any, what: str) -> None:
    if report.hits and not config.allow_contamination:
        first = report.hits[0]
        raise LoopStopped(f"{what} meets frozen benches {len(report.hits)} time(s), first: {first.kind} "
                          f"'{first.corpus_text[:80]}' ~ {first.bench}/{first.item_id}; write other rows, or set "
                          "allow_contamination = true (recorded)")


async def _build_async(config: LoopConfig, baseline: dict[str, Any], source: Any) -> tuple[Any, Any]:
    from refcal.judges import make_judge
    from refcal.recal.builders import Built, build_failures_async, build_general_async, build_pairs, build_tbr_async
    from refcal.run.session import find_run
    from refcal.store.runs import Store
    from refcal.targets import GenerationParams, make_target

    settings = config.corpus
    judge = make_judge("cascade")
    async with contextlib.AsyncExitStack() as stack:
        async def started(spec: str) -> Any:
            target = make_target(spec, params=GenerationParams(max_tokens=config.drill.max_tokens * 2),
                                 concurrency=config.drill.concurrency)
            await stack.enter_async_context(target)

            async def send(messages: Any) -> str:
                return (await target.complete_async(messages)).text
            return send

        base = await started(config.base)
        teacher = await started(settings.teacher) if settings.teacher else None
        general = Built()
        instructions = _instructions(settings.general)
        if instructions:
            general = await build_general_async(instructions, base, config.base, judge, ",".join(settings.general))
        if settings.recipe == "failures":
            with Store(config.store) as store:
                run = find_run(store, str(Path(baseline["receipt_paths"][source.name]).parent))
                built = await build_failures_async(list(store.attempts(run.run_id)), judge, teacher,
                                                   settings.teacher, run.run_id)
            built.rows += general.rows
        else:
            built = await build_tbr_async(source.items, general.rows, judge, teacher or base,
                                          settings.teacher or config.base, "external" if teacher else "internal",
                                          settings.ratio, settings.gamma)
        built.rejected += general.rejected
    pairs = build_pairs(source) if settings.contrastive and config.method == "sft" else None
    return built, pairs


def _instructions(sources: Sequence[str]) -> list[str]:
    """Benign instructions from bench names (their comply items) and JSONL files (`prompt` or `instruction`)."""
    from refcal.files import json_lines

    found: list[str] = []
    for source in sources:
        if source.endswith(".jsonl"):
            found += [str(row.get("prompt") or row.get("instruction")) for _, row in json_lines(Path(source))
                      if isinstance(row, dict) and (row.get("prompt") or row.get("instruction"))]
        else:
            found += [item.prompt for item in load_bench(source).items if item.expect == "comply"]
    return list(dict.fromkeys(found))


def _train(config: LoopConfig, base_weights: str, corpus: dict[str, Any], folder: Path,
           progress: Any) -> dict[str, Any]:
    from refcal.recal.readiness import readiness_dir, require_ready
    gate = require_ready(config.base, base_weights, readiness_dir(config.store), config.force)
    if config.method == "sft":
        from refcal.recal.sft import load_settings, prepare_sft, run_sft

        settings = load_settings(None, {"cpu_threads": config.threads, **config.sft})
        pairs = Path(corpus["pairs_path"]) if "pairs_path" in corpus else None
        job = prepare_sft(config.base, Path(corpus["corpus_path"]), folder, settings, pairs=pairs,
                          allow_contamination=config.allow_contamination, locks=config.locks, readiness=gate)
        receipt = run_sft(job, progress)
        return {"model_dir": receipt.output, "weights_digest": receipt.weights_digest,
                "receipt_path": str(folder / "training-receipt.json"), "steps": receipt.steps,
                "loss": [receipt.loss_curve[0][1], receipt.loss_curve[-1][1]] if receipt.loss_curve else None,
                "training_wall_s": receipt.wall_time_s.get("total")}
    from refcal.recal.direction import prepare_direction, run_direction

    settings, rule = direction_settings(config)
    job = prepare_direction(config.base, config.corpus.source, folder, settings, rule, readiness=gate)
    outcome = run_direction(job, progress)
    if outcome.receipt is None:
        raise LoopStopped(f"no trial of the direction search met the choice rule (false refusal ≤ "
                          f"{rule.max_false_refusal:.0%}, KL ≤ {rule.max_kl}); see {folder / 'trials.json'}")
    receipt = outcome.receipt
    return {"model_dir": receipt.output, "weights_digest": receipt.weights_digest,
            "receipt_path": str(folder / "direction-receipt.json"), "trials_path": str(folder / "trials.json"),
            "chosen": receipt.chosen.number, "training_wall_s": receipt.wall_time_s.get("total")}


def _promote(config: LoopConfig, baseline: dict[str, Any], candidate: dict[str, Any], out: Path) -> dict[str, Any]:
    """The gates on the candidate (against its baseline) and on the base alone, per gated bench; one
    `promotion-BENCH.json` per bench, PROMOTED only when every gate of every bench passes."""
    from refcal.promote.evidence import promotion_record, read_evidence
    from refcal.promote.gates import evaluate, read_gates

    gates = read_gates(config.gates)
    names = list(candidate["receipt_paths"])
    uncovered = [f"{gate.claim} on {gate.bench}" for gate in gates if gate.bench not in names]
    if not gates or uncovered:
        raise LoopStopped(f"the gates in {config.gates} must be about the loop's benches ({', '.join(names)})"
                          + (f"; these are not: {', '.join(uncovered)}" if uncovered else ""))
    rows: list[dict[str, Any]] = []
    paths: dict[str, str] = {}
    for name in names:
        mine = [gate for gate in gates if gate.bench == name]
        if not mine:
            continue
        base_evidence = read_evidence(baseline["receipt_paths"][name], config.store)
        candidate_evidence = read_evidence(candidate["receipt_paths"][name], config.store)
        for_candidate = evaluate(mine, [candidate_evidence], base_evidence, config.locks)
        for_base = evaluate(mine, [base_evidence], None, config.locks)
        passed = all(outcome.passed for outcome in for_candidate)
        paths[name] = str(out / f"promotion-{name}.json")
        write_atomic(Path(paths[name]), promotion_record(passed, config.gates, for_candidate, [candidate_evidence],
                                                         base_evidence))
        for after, before in zip(for_candidate, for_base, strict=True):
            regression = after.gate.check == "no_regression"  # the base is the baseline: nothing to compare
            rows.append({"bench": name, "claim": after.gate.claim, "base_passed": before.passed and not regression,
                         "base_figures": ["(the baseline itself)"] if regression else before.figures,
                         "candidate_passed": after.passed, "candidate_figures": after.figures,
                         "problems": after.problems})
    return {"promoted": all(row["candidate_passed"] for row in rows), "rows": rows, "promotion_paths": paths}


def _write_report(config: LoopConfig, runs: Sequence[StageRun], rows: Sequence[GateRow], promoted: bool,
                  model: dict[str, Any]) -> None:
    from refcal.recal.loop_report import loop_page

    write_atomic(config.out / "report.html", loop_page(config, runs, rows, promoted, model))  # type: ignore[operator]
