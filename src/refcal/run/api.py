"""The library API: what the CLI does, as typed, synchronous calls that return refcal's own types.

Each function is a thin wrapper over the modules the CLI calls: it runs the asynchronous parts with
`asyncio.run` (so call it from plain, synchronous code, not from inside a running event loop), prints
nothing, and raises refcal's errors (`refcal.errors`) instead of exiting. `import refcal` exposes these
names lazily; see `refcal.__all__`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refcal.bench import load_bench
from refcal.bench.freeze import DEFAULT_LOCKS, check_frozen
from refcal.bench.items import Bench
from refcal.drills.plan import HINT_MODES, check_plan, replay_variant
from refcal.errors import MutatorError
from refcal.files import write_atomic
from refcal.judges import DEFAULT_JUDGE, Judge, make_judge
from refcal.receipts import Receipt, receipt_digest
from refcal.receipts import read_receipt as _read_receipt_file
from refcal.records import MAX_DEPTH, MAX_PER_ITEM, Attempt, Hints, MutationPlan, RunRecord, Script, Verdict
from refcal.run.session import drill_async, new_run
from refcal.store.runs import Store
from refcal.targets import DEFAULT_API_KEY_ENV, DEFAULT_TARGET, GenerationParams, Target, make_target

if TYPE_CHECKING:
    from refcal.judges.labels import ResponseRow
    from refcal.promote.gates import Outcome

__all__ = ["DEFAULT_STORE", "Promotion", "drill", "freeze_bench", "judge", "judge_file", "promote_receipts",
           "read_receipt"]

DEFAULT_STORE = Path(".refcal") / "refcal.db"
"""The run database the CLI uses unless told otherwise (`--store`, `REFCAL_STORE`)."""

RECEIPT = "receipt.json"


def freeze_bench(bench: str, *, note: str = "", locks: str | Path = DEFAULT_LOCKS,
                 columns: Mapping[str, str] | None = None, expect_values: Mapping[str, str] | None = None) -> Path:
    """Freeze a bench, as `refcal bench freeze` does: write its lock (digest, counts, a digest per item).

    Drills on a frozen bench then refuse to run if its items change, and promotion gates only accept
    receipts of frozen benches. Freezing the same bench again is a no-op.

    Args:
        bench: A bench name or a `.jsonl` / `.csv` path (recorded relative to `locks`).
        note: Why, and what training run it guards.
        locks: The folder of bench locks.
        columns: For CSV files, item field → column name.
        expect_values: For CSV files, column value → `refuse` / `comply`.

    Returns:
        The lock file.

    Raises:
        refcal.errors.BenchError: The bench is frozen already with other items, or has placeholder items.
    """
    from refcal.bench.freeze import make_lock, spec_for_lock, write_lock

    locks = Path(locks)
    options = {key: dict(value) for key, value in (("columns", columns), ("expect_map", expect_values)) if value}
    loaded = load_bench(bench, columns, expect_values)
    path, _ = write_lock(make_lock(loaded, spec_for_lock(bench, locks), note, options), locks)
    return path


def drill(bench: str | Bench = "starter", target: str | Target = DEFAULT_TARGET, *, judge: str = DEFAULT_JUDGE,
          limit: int | None = None, out: str | Path | None = None, store: str | Path = DEFAULT_STORE,
          locks: str | Path = DEFAULT_LOCKS, concurrency: int = 4, max_tokens: int = 256, temperature: float = 0.0,
          use_cache: bool = True, api_key_env: str = DEFAULT_API_KEY_ENV, judge_target: str | None = None,
          head: str | Path | None = None, mutators: str | None = None, per_item: int = 10, depth: int = 1,
          seed: int = 0, replay: str | None = None, scripts: str | Sequence[Script] | None = None,
          to_end: bool = False, hints: Hints = "both", columns: Mapping[str, str] | None = None,
          expect_values: Mapping[str, str] | None = None,
          on_attempt: Callable[[Attempt], None] | None = None) -> Receipt:
    """Drill a target on both sides of refusal, as `refcal drill` does; return the run's receipt.

    The bench is loaded and checked (a frozen bench that changed stops here), the target and judge are
    built and started, the run is recorded in the store, every variant is sent, judged and committed, and
    `OUT/receipt.json` and `OUT/report.html` are written.

    Args:
        bench: A bench name (`starter`, `xstest`, ...), a `.jsonl` / `.csv` path, or a loaded `Bench`.
        target: A target spec (`llamacpp:smollm2`, `openai:MODEL@URL`, `hf:PATH`), or a built `Target`
            (then `concurrency`, `max_tokens`, `temperature` and `api_key_env` are its own).
        judge: The judge lane: `cascade`, `markers`, `head` or `llm`.
        limit: Only the first N items.
        out: Output directory (default `runs/RUN_ID`).
        store: The run database.
        locks: The folder of bench locks (`refcal bench freeze`).
        concurrency: Requests in flight.
        max_tokens: Longest completion.
        temperature: Sampling temperature.
        use_cache: Reuse cached completions of identical requests.
        api_key_env: Name of the environment variable holding an OpenAI-compatible endpoint's key.
        judge_target: Target spec that plays the llm lane (for `llm`, or the cascade's last lane).
        head: Head file (.npz) for the head and cascade lanes (default: the shipped head).
        mutators: Fast drill: mutator names or families, comma-separated (`surface`, `all`, ...).
        per_item: Fast drill: mutated variants per item.
        depth: Fast drill: longest mutator chain.
        seed: Fast drill: seed of the mutation plan.
        replay: Re-send exactly one variant, by its id.
        scripts: Slow drill: `all`, shipped script names (comma-separated), a .yaml/.json file, or scripts.
        to_end: Slow drill: keep pressing after a break.
        hints: Grounded items: `both`, `off` (hint-free only) or `only` (hinted only).
        columns: For a CSV bench, item field → column name.
        expect_values: For a CSV bench, column value → `refuse` / `comply`.
        on_attempt: Called with each attempt as it is committed (a progress hook).

    Returns:
        The receipt, as written to `OUT/receipt.json`; `receipt.counts.errors` counts failed requests.

    Raises:
        refcal.errors.RefcalError: A bad bench, option, target spec, store or missing extra.
        refcal.errors.FatalTargetError: The target cannot start.
        ValueError: Options that do not go together.
    """
    store, locks = Path(store), Path(locks)
    the_bench = bench if isinstance(bench, Bench) else load_bench(bench, columns, expect_values)
    check_frozen(the_bench, locks)  # a frozen bench that changed stops here, before the target starts
    mutation = _mutation_plan(mutators, per_item, depth, seed)
    the_scripts = _scripts(scripts)
    if the_scripts and (mutation or replay):
        raise ValueError("choose one of scripts (a slow drill) and mutators/replay (a fast drill)")
    if hints not in HINT_MODES:
        raise ValueError(f"hints must be one of {', '.join(HINT_MODES)}, got '{hints}'")
    if the_scripts and any(item.grounded for item in the_bench.items):
        raise ValueError("slow drills (scripts) do not take grounded items (items with a packet)")
    if mutation is not None:
        check_plan(the_bench, mutation)
    if replay is not None:
        replay_variant(the_bench, replay)  # a bad id fails here, before the target starts
    the_target = target if not isinstance(target, str) else make_target(
        target, params=GenerationParams(max_tokens=max_tokens, temperature=temperature), concurrency=concurrency,
        api_key_env=api_key_env)
    the_judge_target = _judge_target(judge_target if judge in ("llm", "cascade") else None)
    head_path = Path(head) if head is not None else None
    the_judge = make_judge(judge, the_judge_target, head_path)

    with Store(store) as database:
        def plan() -> RunRecord:
            return new_run(database, the_bench, the_target, the_judge, target_spec=the_target.description,
                           out_root=Path("runs"), out_dir=Path(out) if out is not None else None, limit=limit,
                           concurrency=concurrency, use_cache=use_cache, api_key_env=api_key_env,
                           judge_target=the_judge_target.description if the_judge_target else None,
                           judge_head=str(head_path.resolve()) if head_path else None,
                           mutation=None if replay else mutation, replay=replay, scripts=the_scripts,
                           to_end=to_end, locks=locks, hints=hints)

        return asyncio.run(_drill_async(database, the_target, the_judge, plan, the_judge_target, on_attempt))


async def _drill_async(store: Store, target: Target, judge: Judge, plan: Callable[[], RunRecord],
                       judge_target: Target | None, on_attempt: Callable[[Attempt], None] | None) -> Receipt:
    """Start the targets first (fail fast), only then record the run and drill it."""
    async with contextlib.AsyncExitStack() as stack:
        for started in (target, judge_target):
            if started is not None:
                await stack.enter_async_context(started)
        receipt = await drill_async(plan(), target, judge, store, on_attempt)
    return receipt.model_copy(update={"digest": receipt_digest(receipt)})  # sealed, as written to receipt.json


def _mutation_plan(spec: str | None, per_item: int, depth: int, seed: int) -> MutationPlan | None:
    if spec is None:
        return None
    from refcal.drills.mutators import select

    if not 1 <= depth <= MAX_DEPTH:
        raise MutatorError(f"depth must be 1 to {MAX_DEPTH}, got {depth}")
    if not 1 <= per_item <= MAX_PER_ITEM:
        raise MutatorError(f"per_item must be 1 to {MAX_PER_ITEM:,}, got {per_item}")
    return MutationPlan(mutators=select(spec), per_item=per_item, depth=depth, seed=seed)


def _scripts(spec: str | Sequence[Script] | None) -> tuple[Script, ...] | None:
    if spec is None:
        return None
    if not isinstance(spec, str):
        return tuple(spec) or None
    from refcal.drills.scripts import load_scripts, shipped_scripts

    if spec.endswith((".yaml", ".yml", ".json")):
        return load_scripts(spec)
    shipped = {script.name: script for script in shipped_scripts()}
    if spec == "all":
        return tuple(shipped.values())
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in shipped]
    if unknown or not names:
        raise ValueError(f"unknown scripts {unknown} (shipped: {', '.join(shipped)}; or give a .yaml/.json file)")
    return tuple(shipped[name] for name in names)


def _judge_target(spec: str | None) -> Target | None:
    if not spec:
        return None
    from refcal.judges.llm import make_judge_target

    return make_judge_target(spec)


def judge(rows: str | Path | Iterable[ResponseRow | Mapping[str, Any] | tuple[str, str]], *,
          lane: str = DEFAULT_JUDGE, judge_target: str | None = None, head: str | Path | None = None) -> list[Verdict]:
    """Judge responses, as `refcal judge` does; one verdict per row, in order.

    Args:
        rows: A JSONL file of `{id, prompt, response, ...}` rows (checked whole before anything is judged),
            or the rows: `ResponseRow`s, mappings with `prompt` and `response` (or `completion`), or
            `(prompt, response)` pairs.
        lane: The judge lane: `cascade`, `markers`, `head` or `llm`.
        judge_target: Target spec that plays the llm lane (needed by `llm`; the cascade uses one when given).
        head: Head file (.npz) for the head and cascade lanes (default: the shipped head).

    Returns:
        The verdicts, in the order of the rows.

    Raises:
        refcal.errors.InputFileError: A bad line in the file (file, line and field named).
        ValueError: `llm` without a judge target, or an unknown lane.
    """
    return _verdicts(_pairs(rows), lane, judge_target, Path(head) if head is not None else None)[1]


def judge_file(source: str | Path, out: str | Path, *, lane: str = DEFAULT_JUDGE, judge_target: str | None = None,
               head: str | Path | None = None) -> list[Verdict]:
    """Judge a response file and write `{id, verdict, score, lane, depth}` plus each row's other fields to `out`
    (JSONL, written atomically), as `refcal judge IN.jsonl --out OUT.jsonl` does.

    Args:
        source: JSONL rows `{id, prompt, response, ...}`.
        out: The output JSONL file.
        lane: The judge lane: `cascade`, `markers`, `head` or `llm`.
        judge_target: Target spec that plays the llm lane.
        head: Head file (.npz) for the head and cascade lanes.

    Returns:
        The verdicts, in the order of the rows.
    """
    from refcal.judges.labels import read_rows

    read = read_rows(source)
    _, verdicts = _verdicts([(row.prompt, row.response) for row in read], lane, judge_target,
                            Path(head) if head is not None else None)
    lines = []
    for row, verdict in zip(read, verdicts, strict=True):
        fields = {"id": row.id, "verdict": verdict.label, "score": verdict.score, "lane": verdict.lane,
                  "depth": verdict.depth}
        lines.append(json.dumps({**(row.model_extra or {}), **fields}, ensure_ascii=False))
    write_atomic(Path(out), "\n".join(lines) + "\n")
    return verdicts


def _pairs(rows: str | Path | Iterable[ResponseRow | Mapping[str, Any] | tuple[str, str]]) -> list[tuple[str, str]]:
    from refcal.judges.labels import ResponseRow, read_rows

    if isinstance(rows, str | Path):
        return [(row.prompt, row.response) for row in read_rows(rows)]
    pairs = []
    for number, row in enumerate(rows, 1):
        if isinstance(row, ResponseRow):
            pairs.append((row.prompt, row.response))
        elif isinstance(row, Mapping):
            response = row.get("response", row.get("completion"))
            if not isinstance(row.get("prompt"), str) or not isinstance(response, str):
                raise ValueError(f"row {number}: needs string fields 'prompt' and 'response'")
            pairs.append((row["prompt"], response))
        else:
            prompt, response = row
            pairs.append((str(prompt), str(response)))
    return pairs


def _verdicts(pairs: list[tuple[str, str]], lane: str, judge_target: str | None,
              head: Path | None) -> tuple[Judge, list[Verdict]]:
    """Judge every pair in one batch (head and cascade embed rows in batches; a judge target is started once
    and its calls run concurrently)."""
    if lane == "llm" and not judge_target:
        raise ValueError("the llm lane needs a judge target (e.g. judge_target='llamacpp:smollm2')")
    if not judge_target or lane not in ("llm", "cascade"):
        the_judge = make_judge(lane, None, head)
        return the_judge, asyncio.run(the_judge.judge_batch(pairs))
    target = _judge_target(judge_target)
    assert target is not None

    async def run() -> tuple[Judge, list[Verdict]]:
        async with target:
            started = make_judge(lane, target, head)
            return started, await started.judge_batch(pairs)
    return asyncio.run(run())


def read_receipt(path: str | Path) -> Receipt:
    """Read a receipt: a `receipt.json` file, or a run folder holding one.

    The receipt is parsed, not vouched for: `refcal.receipts.receipt_digest(receipt) == receipt.digest`
    tells whether it was edited after it was written, and `promote_receipts` checks that and more.
    """
    path = Path(path)
    return _read_receipt_file(path / RECEIPT if path.is_dir() else path)


@dataclass(frozen=True)
class Promotion:
    """The promotion decision: every gate's outcome, and where the decision record was written."""

    promoted: bool
    """True when every gate passes."""
    outcomes: list[Outcome] = field(default_factory=list)
    """One per gate: the claim, the figures measured, and the problems that failed it."""
    path: Path | None = None
    """The decision record (JSON) written."""

    @property
    def decision(self) -> str:
        """`PROMOTED` or `REJECTED`."""
        return "PROMOTED" if self.promoted else "REJECTED"


def promote_receipts(candidates: Sequence[str | Path], gates: str | Path, *, baseline: str | Path | None = None,
                     out: str | Path | None = None, locks: str | Path = DEFAULT_LOCKS,
                     store: str | Path = DEFAULT_STORE, strict: bool = False) -> Promotion:
    """Check every gate against the candidate receipts and their evidence, as `refcal promote` does.

    Each receipt must parse, match its own digest, be of the gate's frozen bench (its lock in `locks`), be
    judged by the judge the gate names and come from a complete run; when `store` still holds the run, its
    figures are rebuilt from the committed attempts and must match. The decision is written as JSON.

    Args:
        candidates: Receipts (`receipt.json` files or run folders).
        gates: The gates file (TOML).
        baseline: The baseline receipt, for `no_regression`.
        out: Where to write the decision (default: `promotion.json` beside the first candidate).
        locks: The folder of bench locks.
        store: The run database.
        strict: Fail every gate its bench cannot decide at its size (underpowered).

    Returns:
        The decision; `promoted` is False as soon as any gate fails.

    Raises:
        refcal.errors.InputFileError: A bad gates file (the line named).
    """
    from refcal.promote.evidence import promotion_record, read_evidence
    from refcal.promote.gates import evaluate, read_gates

    if not candidates:
        raise ValueError("promote_receipts needs at least one candidate receipt")
    gates, store = Path(gates), Path(store)
    the_gates = read_gates(gates)
    evidence = [read_evidence(str(candidate), store) for candidate in candidates]
    base = read_evidence(str(baseline), store) if baseline is not None else None
    outcomes = evaluate(the_gates, evidence, base, Path(locks), strict)
    promoted = all(outcome.passed for outcome in outcomes)
    target = Path(out) if out is not None else Path(evidence[0].path).parent / "promotion.json"
    write_atomic(target, promotion_record(promoted, gates, outcomes, evidence, base))
    return Promotion(promoted=promoted, outcomes=outcomes, path=target)
