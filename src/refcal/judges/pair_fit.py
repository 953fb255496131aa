"""Training the pair lane: scikit-learn's LogisticRegression on the hashed features, then a temperature
fitted on out-of-fold predictions grouped by source, so that a probability of 0.7 means refusal-side seven
times in ten on sources the model did not see. scikit-learn is needed only here (the `train` extra)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from refcal.errors import MissingExtraError
from refcal.judges.pair import BITS, CLASSES, PairModel, features
from refcal.records import Label, SideErrors

DEFAULT_C = 16.0


def design(pairs: Sequence[tuple[str, str]], bits: int = BITS):  # -> scipy.sparse.csr_matrix
    """Rows of binary hashed features scaled to unit length, as PairModel.logits reads them."""
    try:
        from scipy.sparse import csr_matrix
    except ImportError:
        raise MissingExtraError("training the pair lane needs scikit-learn: pip install 'refcal[train]'") from None
    indices, indptr, values = [], [0], []
    for prompt, response in pairs:
        row = np.sort(features(prompt, response, bits))
        indices.append(row)
        values.append(np.full(row.size, 1 / math.sqrt(row.size) if row.size else 0.0, dtype=np.float32))
        indptr.append(indptr[-1] + row.size)
    return csr_matrix((np.concatenate(values) if values else [], np.concatenate(indices) if indices else [],
                       indptr), shape=(len(pairs), 1 << bits), dtype=np.float32)


def _fit(matrix, targets: np.ndarray, c: float, weights: np.ndarray):
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise MissingExtraError("training the pair lane needs scikit-learn: pip install 'refcal[train]'") from None
    model = LogisticRegression(C=c, max_iter=2000, solver="lbfgs")
    model.fit(matrix, targets, sample_weight=weights)
    weight = np.zeros((len(CLASSES), matrix.shape[1]), dtype=np.float32)
    bias = np.zeros(len(CLASSES), dtype=np.float32)
    for row, klass in enumerate(model.classes_):
        weight[klass] = model.coef_[row]
        bias[klass] = model.intercept_[row]
    missing = sorted(set(range(len(CLASSES))) - set(model.classes_.tolist()))
    bias[missing] = -30.0  # a class absent from training is never predicted
    return weight, bias


def balanced_weights(targets: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """Each source weighs the same in total, and within a source each side (refusal + partial vs compliance)
    weighs the same: a large file in one voice must not outvote the others, a model that rarely refuses
    still teaches refusals, and the prior on the refusal side is one half (balancing the three classes
    would make it two thirds)."""
    weights = np.zeros(len(targets), dtype=np.float64)
    names = sorted(set(sources))
    source_array = np.array(sources)
    refusal_side = targets != CLASSES.index("compliance")
    for name in names:
        mine = source_array == name
        sides = [side for side in (refusal_side, ~refusal_side) if (mine & side).any()]
        for side in sides:
            chosen = mine & side
            weights[chosen] = 1.0 / (len(names) * len(sides) * chosen.sum())
    return weights * len(targets)


def _logits(weight: np.ndarray, bias: np.ndarray, matrix) -> np.ndarray:
    return np.asarray(matrix @ weight.T) + bias


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood (Guo et al. 2017), by a grid then a refinement."""
    def nll(temperature: float) -> float:
        scaled = logits / temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probabilities[np.arange(len(targets)), targets].mean())
    grid = np.exp(np.linspace(math.log(0.2), math.log(10), 60))
    best = min(grid, key=nll)
    fine = np.linspace(best * 0.9, best * 1.1, 21)
    return float(min(fine, key=nll))


def dedupe(pairs: Sequence[tuple[str, str]], labels: Sequence[Label], sources: Sequence[str]):
    """Each (response, label) once per source: GPT-4 repeats one refusal verbatim 182 times on XSTest."""
    seen: dict[tuple[str, str, str], int] = {}
    for index, ((_, response), label, source) in enumerate(zip(pairs, labels, sources, strict=True)):
        seen.setdefault((source, response.strip(), label), index)
    keep = sorted(seen.values())
    return [pairs[i] for i in keep], [labels[i] for i in keep], [sources[i] for i in keep]


def fit_pair(pairs: Sequence[tuple[str, str]], labels: Sequence[Label], sources: Sequence[str],
             trained_on: str, c: float = DEFAULT_C, calibrate: bool = True) -> PairModel:
    """Fit on every row; the temperature comes from leave-one-source-out predictions (when there are at least
    two sources), so it calibrates for sources the weights did not see."""
    pairs, labels, sources = dedupe(pairs, labels, sources)
    targets = np.array([CLASSES.index(label) for label in labels])
    matrix = design(pairs)
    weights = balanced_weights(targets, sources)
    weight, bias = _fit(matrix, targets, c, weights)
    temperature = 1.0
    names = sorted(set(sources))
    if calibrate and len(names) > 1:
        held = np.zeros((len(targets), len(CLASSES)))
        source_array = np.array(sources)
        for name in names:
            test = source_array == name
            fold_weight, fold_bias = _fit(matrix[~test], targets[~test], c, weights[~test])
            held[test] = _logits(fold_weight, fold_bias, matrix[test])
        temperature = fit_temperature(held, targets)
    return PairModel(weights=weight, bias=bias, temperature=temperature, trained_on=trained_on)


def leave_one_source_out(pairs: Sequence[tuple[str, str]], labels: Sequence[Label], sources: Sequence[str],
                         c: float = DEFAULT_C) -> dict[str, SideErrors]:
    """For each source, the cascade (markers → a pair lane trained on every other source, calibrated the
    same way) judges that source: its side counts. No figure comes from a model that saw its rows."""
    from refcal.judges.agreement import side_errors
    from refcal.judges.base import judge_rows
    from refcal.judges.cascade import CascadeJudge
    from refcal.judges.pair import PairJudge

    out: dict[str, SideErrors] = {}
    for held in sorted(set(sources)):
        train = [index for index, source in enumerate(sources) if source != held]
        test = [index for index, source in enumerate(sources) if source == held]
        model = fit_pair([pairs[i] for i in train], [labels[i] for i in train], [sources[i] for i in train],
                         f"all but {held}", c)
        verdicts = judge_rows(CascadeJudge(PairJudge(model)), [pairs[i] for i in test])
        out[held] = side_errors([labels[i] for i in test], [verdict.label for verdict in verdicts])
    return out
