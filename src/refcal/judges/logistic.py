"""Logistic regression by full-batch gradient descent, the one fit behind the judges' head and the request-risk
head: multinomial (softmax link) for the head's classes, binary (sigmoid link) for must-refuse vs benign."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, classes) logits."""
    logits = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -30.0, 30.0)))


def fit_logistic(features: np.ndarray, targets: np.ndarray, sample_weights: np.ndarray,
                 link: Callable[[np.ndarray], np.ndarray], l2: float = 1e-3, steps: int = 500,
                 learning_rate: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Weights (k, features) and bias (k,) minimising the `sample_weights`-weighted cross-entropy plus
    l2/2·|weights|² for (n, k) `targets` (one-hot rows with the softmax link, one 0/1 column with the sigmoid)."""
    weights = np.zeros((targets.shape[1], features.shape[1]))
    bias = np.zeros(targets.shape[1])
    for _ in range(steps):
        error = (link(features @ weights.T + bias) - targets) * sample_weights[:, None]
        weights -= learning_rate * (error.T @ features + l2 * weights)
        bias -= learning_rate * error.sum(axis=0)
    return weights, bias
