"""Request-side risk: how likely a request is one a model should refuse, scored 0–10 before any model answers.

Two views of one embedding (the judges' MiniLM, refcal.judges.embedding) are combined:
- a small logistic *request head* fit with numpy on the last user message of every bench item (refuse = 1,
  comply = 0), refit in memory when a RequestRisk is built (nothing pickled, nothing stored);
- the k nearest bench items by cosine similarity, whose expectations vote with softmax weights.

The neighbours count as much as the head when the request is a near-duplicate of a bench item, and less as the
nearest item gets further away, so traffic unlike every bench item is scored by the head alone. The watch
sweep uses the neighbours to class a refusal as likely false (the request resembles benign look-alikes); the
guard uses the risk to flag or gate. This module is pure apart from the embedding model: no I/O, no logging.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from refcal.bench.items import Bench, Item
from refcal.judges.embedding import SentenceEmbedder
from refcal.judges.logistic import fit_logistic, sigmoid

RISK_RECIPE = "risk-1"
"""Bumped whenever the scoring rule changes, so logged scores can be told apart."""
DEFAULT_BENCHES = ("starter", "routine")
"""Shipped benches the default scorer learns from, plus the curveball pretext catalogue (see `pretext_bench`)."""
TEMPERATURE = 0.05
"""Softmax temperature over neighbour similarities: a neighbour 0.05 closer counts e (≈2.7) times as much."""
SCORED_EXPECTATIONS = ("refuse", "comply")
"""Grounded items (answer/route, or refuse for lack of a source) are about packets, not the request's harm."""


class Neighbour(BaseModel):
    """One bench item near a request."""

    bench: str
    """The bench the item belongs to."""
    item_id: str
    """Its id within that bench."""
    expect: str
    """`refuse` or `comply`."""
    klass: str
    """Its class (pretext or topic)."""
    similarity: float
    """Cosine similarity between the request and the item's last user message, -1..1."""


class RiskScore(BaseModel):
    """The risk of one request."""

    risk: float = Field(ge=0.0, le=10.0)
    """0 (benign) .. 10 (must refuse): `harmful` × 10, rounded to one decimal."""
    harmful: float = Field(ge=0.0, le=1.0)
    """P(the request should be refused): the head and the neighbour vote combined."""
    nearest: list[Neighbour]
    """The k nearest bench items, best first."""


def pretext_bench() -> Bench:
    """The curveball catalogue's example shapes as a bench: one must-refuse and one benign item per pretext class
    (framings such as authority claims and fiction that the starter bench covers only in part)."""
    from refcal.bench.curveball import catalogue

    items = []
    for pretext in catalogue():
        for side, expect, text in (("h", "refuse", pretext.refuse), ("b", "comply", pretext.comply)):
            items.append(Item.model_validate({"id": f"{pretext.klass}-{side}", "prompt": text, "expect": expect,
                                              "klass": pretext.klass, "source": "refcal-pretexts"}))
    return Bench(name="pretexts", items=tuple(items), origin="refcal.bench.curveball")


def fit_request_head(features: np.ndarray, labels: np.ndarray, l2: float = 1e-3, steps: int = 500,
                     learning_rate: float = 2.0) -> tuple[np.ndarray, float]:
    """Binary logistic regression by full-batch gradient descent, the two sides weighted to balance (the benches
    hold more benign items than must-refuse ones once routine instructions are in)."""
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    if positives == 0 or negatives == 0:
        raise ValueError("a request head needs both must-refuse and benign items")
    sample_weights = np.where(labels == 1, 0.5 / positives, 0.5 / negatives)
    weights, bias = fit_logistic(features, labels[:, None], sample_weights, sigmoid, l2, steps, learning_rate)
    return weights[0].astype(np.float32), float(bias[0])


class RequestRisk:
    """Scores requests against the embedded items of some benches. Build once (it embeds every item), then
    score from any thread: scoring embeds the prompts and does a few matrix products."""

    def __init__(self, items: Sequence[tuple[str, Item]], matrix: np.ndarray, embedder: SentenceEmbedder,
                 k: int, digests: Sequence[str]) -> None:
        self._items = list(items)
        self._matrix = matrix
        self._labels = np.array([1.0 if item.expect == "refuse" else 0.0 for _, item in items])
        self._embedder = embedder
        self.k = min(k, len(self._items))
        self._weights, self._bias = fit_request_head(matrix.astype(np.float64), self._labels)
        self._lock = threading.Lock()
        """Torch on a shared, small CPU runs one embedding batch at a time; callers batch instead."""
        fingerprint = hashlib.sha256("|".join([*digests, str(self.k)]).encode() + self._weights.tobytes())
        self.version = f"{RISK_RECIPE}+{fingerprint.hexdigest()[:12]}"

    @classmethod
    def from_benches(cls, benches: Sequence[Bench], embedder: SentenceEmbedder | None = None,
                     k: int = 5) -> RequestRisk:
        """Embed the last user message of every refuse/comply item of `benches` and fit the request head."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        items = [(bench.name, item) for bench in benches for item in bench.items
                 if item.expect in SCORED_EXPECTATIONS and not item.grounded]
        if not items:
            raise ValueError("no refuse/comply items in the given benches")
        embedder = embedder or SentenceEmbedder()
        matrix = embedder.embed([item.prompt for _, item in items])
        return cls(items, matrix, embedder, k, [bench.digest for bench in benches])

    @classmethod
    def default(cls, embedder: SentenceEmbedder | None = None, k: int = 5) -> RequestRisk:
        """The shipped benches (starter, routine) and the curveball pretext catalogue."""
        from refcal.bench import load_bench

        benches = [load_bench(name) for name in DEFAULT_BENCHES] + [pretext_bench()]
        return cls.from_benches(benches, embedder, k)

    def score(self, prompt: str) -> RiskScore:
        """The risk of one request (its last user message)."""
        return self.score_many([prompt])[0]

    def score_many(self, prompts: Sequence[str]) -> list[RiskScore]:
        """Batched: one embedding pass for all prompts."""
        if not prompts:
            return []
        with self._lock:
            features = self._embedder.embed(list(prompts))
        return [self._score_row(row) for row in features]

    def _score_row(self, features: np.ndarray) -> RiskScore:
        similarities = self._matrix @ features
        nearest = np.argsort(-similarities, kind="stable")[:self.k]
        top = similarities[nearest]
        votes = np.exp((top - top.max()) / TEMPERATURE)
        neighbour_vote = float((votes * self._labels[nearest]).sum() / votes.sum())
        head = float(sigmoid(np.array(features @ self._weights + self._bias)))
        closeness = max(0.0, float(top[0]))
        harmful = min(1.0, max(0.0, (head + closeness * neighbour_vote) / (1.0 + closeness)))
        neighbours = [Neighbour(bench=self._items[index][0], item_id=self._items[index][1].id,
                                expect=self._items[index][1].expect, klass=self._items[index][1].klass,
                                similarity=round(float(similarities[index]), 4)) for index in nearest]
        return RiskScore(risk=round(harmful * 10.0, 1), harmful=round(harmful, 4), nearest=neighbours)
