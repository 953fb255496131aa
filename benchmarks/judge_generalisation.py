"""The default judge on sources it never saw: leave-one-source-out agreement with human labels, calibration
and speed, beside XSTest's prefix matcher and the markers lane in the same run.

    python benchmarks/judge_generalisation.py ../shared/data/xstest_dev_completions.jsonl research/judge_data/*.jsonl
        [--with-head]   # also the previous cascade (markers → MiniLM head at 0.85/0.9; needs the hf extra)

A row's source is its `model` field when it has one (XSTest: gpt4, llama2new), else its file's name. For each
source, the pair lane is trained on every other source (scripts/train_pair.py's recipe, calibrated the same
way) and the cascade judges the held-out source; undetermined counts as wrong. Then:

- calibration: the pooled out-of-source refusal-side probabilities of the pair lane, in ten bins (reliability
  table) with the expected calibration error (ECE, bin-weighted |accuracy − confidence|, Guo et al. 2017);
- the share of responses each lane decides;
- speed, one core (torch and numpy threads pinned to 1), batched, cold start excluded: responses/s of the
  shipped cascade on all rows, median of 5 passes, with the markers lane alone as the baseline in the same
  run, and the p50/p99 of single decisions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import itertools

import numpy as np
from judge_agreement import prefix_verdict  # XSTest's prefix matcher, the same in both benchmarks

from refcal.judges.agreement import agreement
from refcal.judges.base import judge_rows
from refcal.judges.cascade import CascadeJudge
from refcal.judges.labels import read_rows
from refcal.judges.markers import MarkersJudge
from refcal.judges.pair import PairJudge
from refcal.judges.pair_fit import fit_pair

MIN_STYLE_ROWS = 20


def line(name: str, gold: list, judged: list) -> str:
    scores = agreement(list(zip(gold, judged, strict=True)))
    return (f"  {name:<22} acc {scores.accuracy:.3f}  F1 {scores.f1:.3f}  R {scores.recall:.3f}  "
            f"P {scores.precision:.3f}  undetermined {scores.undetermined}")


def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Print the reliability table and return the ECE."""
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    print("  bin          n    mean p   refusal share")
    for low, high in itertools.pairwise(edges):
        chosen = (probabilities >= low) & ((probabilities < high) if high < 1 else (probabilities <= high))
        if not chosen.any():
            continue
        confidence, share = probabilities[chosen].mean(), truth[chosen].mean()
        ece += chosen.mean() * abs(confidence - share)
        print(f"  [{low:.1f}, {high:.1f})  {chosen.sum():>5}   {confidence:.3f}    {share:.3f}")
    return float(ece)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--with-head", action="store_true", help="also the previous cascade (markers → head)")
    parser.add_argument("--by-style", action="store_true",
                        help="leave-one-style-out instead: each `style` of refcal's files held out in turn")
    args = parser.parse_args()
    rows, sources = [], []
    for path in args.files:
        for row in read_rows(path, require_label=True):
            rows.append(row)
            sources.append(str((row.model_extra or {}).get("model") or path.stem))
    pairs = [(row.prompt, row.response) for row in rows]
    labels = [row.label for row in rows]
    if args.by_style:
        by_style(rows, pairs, labels, sources)
        return
    names = list(dict.fromkeys(sources))
    print(f"{len(rows)} rows; sources: " + ", ".join(f"{name} {sources.count(name)}" for name in names))
    print("refusal = full + partial; undetermined counts as wrong; each source judged by a model that never saw it")
    head = None
    if args.with_head:
        from refcal.judges.head import HeadJudge, load_head
        head = CascadeJudge(HeadJudge(load_head()))
        print(f"previous cascade: {head.version} (its shipped head saw the XSTest and refcal files: its figures "
              "on those are not held out)")
    markers = MarkersJudge()
    held_probabilities = np.zeros(len(rows))
    lanes: dict[str, int] = {}
    summary = []
    for held in names:
        test = [index for index, source in enumerate(sources) if source == held]
        train = [index for index, source in enumerate(sources) if source != held]
        model = fit_pair([pairs[i] for i in train], [labels[i] for i in train], [sources[i] for i in train],
                         f"all but {held}")
        cascade = CascadeJudge(PairJudge(model))
        held_pairs = [pairs[i] for i in test]
        gold = [labels[i] for i in test]
        verdicts = judge_rows(cascade, held_pairs)
        probability = model.probabilities(held_pairs)
        held_probabilities[test] = probability[:, 0] + probability[:, 1]
        for verdict in verdicts:
            lanes[verdict.lane] = lanes.get(verdict.lane, 0) + 1
        print(f"\nheld out: {held} (n={len(test)})")
        print(line("xstest prefixes", gold, [prefix_verdict(response) for _, response in held_pairs]))
        print(line("markers", gold, [markers.judge(*pair).label for pair in held_pairs]))
        if head is not None:
            print(line("previous cascade", gold, [verdict.label for verdict in judge_rows(head, held_pairs)]))
        print(line("cascade (markers→pair)", gold, [verdict.label for verdict in verdicts]))
        scores = agreement(list(zip(gold, [verdict.label for verdict in verdicts], strict=True)))
        summary.append((held, len(test), scores.accuracy, scores.f1, scores.recall, scores.precision))
    print("\nleave-one-source-out, cascade (markers → pair):")
    print("| source | n | accuracy | F1 | recall | precision |\n|---|---|---|---|---|---|")
    for held, n, accuracy, f1, recall, precision in summary:
        print(f"| {held} | {n} | {accuracy:.3f} | {f1:.3f} | {recall:.3f} | {precision:.3f} |")
    truth = np.array([label != "compliance" for label in labels], dtype=float)
    print("\ncalibration of the pair lane's refusal-side probability, out of source:")
    print(f"ECE {reliability(held_probabilities, truth):.3f}")
    total = sum(lanes.values())
    print("\nlanes deciding (held-out runs): " + ", ".join(f"{lane} {count / total:.1%}" for lane, count in
                                                      sorted(lanes.items())))
    speed(pairs)


def by_style(rows: list, pairs: list, labels: list, sources: list[str]) -> None:
    """Each style (of rows that have one) held out in turn: the pair lane trains on every other row, including
    other styles of the same file, so this asks whether a way of refusing transfers from the other ways."""
    styles = [str((row.model_extra or {}).get("style") or "") for row in rows]
    counts = {style: styles.count(style) for style in set(styles) if style}
    names = sorted(style for style, count in counts.items() if count >= MIN_STYLE_ROWS)
    print(f"{len(names)} styles of at least {MIN_STYLE_ROWS} rows held out in turn (rows without a style, and "
          "smaller styles, always train)")
    results = []
    for held in names:
        test = [index for index, style in enumerate(styles) if style == held]
        train = [index for index, style in enumerate(styles) if style != held]
        model = fit_pair([pairs[i] for i in train], [labels[i] for i in train], [sources[i] for i in train],
                         f"all but style {held}", calibrate=False)
        verdicts = judge_rows(CascadeJudge(PairJudge(model)), [pairs[i] for i in test])
        right = sum((labels[i] != "compliance") == (verdict.label in ("refusal", "partial_refusal"))
                    for i, verdict in zip(test, verdicts, strict=True))
        results.append((right / len(test), held, len(test)))
    results.sort()
    accuracies = [accuracy for accuracy, _, _ in results]
    print(f"accuracy per held-out style: median {statistics.median(accuracies):.3f}, "
          f"styles under 0.85: {sum(accuracy < 0.85 for accuracy in accuracies)} of {len(results)}")
    for accuracy, held, n in results:
        print(f"  {held:<36} n={n:<4} acc {accuracy:.3f}", flush=True)


def speed(pairs: list[tuple[str, str]]) -> None:
    from refcal.judges import make_judge

    cascade, markers = make_judge("cascade"), MarkersJudge()
    judge_rows(cascade, pairs[:50])  # cold start (loading the model) excluded
    timings: dict[str, list[float]] = {"markers": [], "cascade": []}
    for _ in range(5):
        for name, judge in (("markers", markers), ("cascade", cascade)):
            start = time.perf_counter()
            judge_rows(judge, pairs)
            timings[name].append(len(pairs) / (time.perf_counter() - start))
    singles = []
    for pair in pairs[:500]:
        start = time.perf_counter()
        judge_rows(cascade, [pair])
        singles.append(time.perf_counter() - start)
    singles.sort()
    load = os.getloadavg()[0]
    markers_rate, cascade_rate = statistics.median(timings["markers"]), statistics.median(timings["cascade"])
    print(f"\nspeed, one core, {len(pairs)} responses batched, median of 5 (load average {load:.2f}):")
    print(f"  markers alone {markers_rate:,.0f}/s; cascade {cascade_rate:,.0f}/s "
          f"({cascade_rate / markers_rate:.2f}× the markers baseline)")
    print(f"  single decisions: p50 {singles[len(singles) // 2] * 1000:.2f} ms, "
          f"p99 {singles[int(len(singles) * 0.99)] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
