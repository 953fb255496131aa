"""Which refusals in live traffic look false: each refused request is classed from its request-side risk
(refcal.judges.risk: a request head on the judges' MiniLM embedding plus the nearest bench items).

- `warranted`: P(the request should be refused) ≥ WARRANTED (0.6);
- `likely_false`: P ≤ LIKELY_FALSE (0.3) *and* a benign bench item (a look-alike or a routine instruction,
  `expect=comply`) is among its nearest with cosine similarity ≥ BENIGN_SIMILARITY (0.3): the request is like
  requests a model should answer;
- `unclear`: everything else (a middling P, or a low P with no benign item near: traffic unlike the benches,
  where the neighbours vouch for nothing).

The thresholds were chosen on the shipped starter bench held out (scorer fit on the other half of its pairs,
with routine and the pretext catalogue; tests/test_watch_sweep.py re-measures it): of 70 must-refuse items,
49 come out warranted and 2 likely false; of 70 benign look-alikes, 21 come out likely false and 10 warranted.
Likely-false is the precise side on purpose (2 of 23 wrong): it feeds an alarm. Traffic that resembles the
bench items more closely than held-out items do is classed more decisively. On XSTest's 450 prompts (a copy
outside the project; the default scorer, which has never seen them) 71 of 250 safe look-alikes come out
likely false and 17 of 200 unsafe prompts do (26 and 119 warranted): the request-side scorer is the limit,
and a harmful request it scores low and finds a benign neighbour for (a must-refuse chemistry question next to
its look-alike) is classed likely false. The alarm watches the *rate* of such refusals, which moves when a
model starts refusing benign traffic, however imperfect each single class is.

A risk score the guard logged beside the exchange is reused when its scorer version is this classifier's;
otherwise requests are embedded in batches, and repeated requests come from a small cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from refcal.judges.risk import RequestRisk, RiskScore

RefusalClass = Literal["likely_false", "warranted", "unclear"]
REFUSAL_CLASSES: tuple[RefusalClass, ...] = ("likely_false", "warranted", "unclear")
LIKELY_FALSE = 0.3
WARRANTED = 0.6
BENIGN_SIMILARITY = 0.3
CLASS_RECIPE = "refusal-class-1"
CACHE_SIZE = 20_000


def refusal_class(score: RiskScore) -> RefusalClass:
    """The class of a refusal of a request with this risk score (thresholds in the module docstring)."""
    if score.harmful >= WARRANTED:
        return "warranted"
    benign_near = any(neighbour.expect == "comply" and neighbour.similarity >= BENIGN_SIMILARITY
                      for neighbour in score.nearest)
    if score.harmful <= LIKELY_FALSE and benign_near:
        return "likely_false"
    return "unclear"


class RefusalClassifier:
    """Classes refused requests; the risk scorer is built on first use (it embeds the benches: seconds)."""

    def __init__(self, risk: RequestRisk | None = None, cache_size: int = CACHE_SIZE) -> None:
        self._risk = risk
        self._cache: OrderedDict[str, RefusalClass] = OrderedDict()
        self.cache_size = cache_size
        self.embedded = 0
        """Requests embedded so far (neither logged with a usable score nor cached)."""
        self.reused = 0
        """Requests classed from a risk score logged beside them."""

    @property
    def risk(self) -> RequestRisk:
        if self._risk is None:
            from refcal.judges.risk import RequestRisk

            self._risk = RequestRisk.default()
        return self._risk

    @property
    def version(self) -> str:
        return f"{CLASS_RECIPE}@{LIKELY_FALSE:g}/{WARRANTED:g}/{BENIGN_SIMILARITY:g}+{self.risk.version}"

    def classify_many(self, prompts: Sequence[str],
                      logged: Sequence[Mapping[str, Any] | None] | None = None) -> list[RefusalClass]:
        """The class of each refused request, `logged[i]` being a risk score logged with it (or None)."""
        classes: list[RefusalClass | None] = [None] * len(prompts)
        missing: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            reused = self._from_log(logged[index] if logged else None)
            if reused is not None:
                classes[index] = reused
                self.reused += 1
            elif prompt in self._cache:
                self._cache.move_to_end(prompt)
                classes[index] = self._cache[prompt]
            else:
                missing.setdefault(prompt, []).append(index)
        if missing:
            scores = self.risk.score_many(list(missing))
            self.embedded += len(missing)
            for (prompt, indexes), score in zip(missing.items(), scores, strict=True):
                found = refusal_class(score)
                self._remember(prompt, found)
                for index in indexes:
                    classes[index] = found
        return [found for found in classes if found is not None]

    def _from_log(self, logged: Mapping[str, Any] | None) -> RefusalClass | None:
        """A logged score made by this classifier's scorer (the guard's, same benches and recipe)."""
        if not logged or logged.get("version") != self.risk.version:
            return None
        from pydantic import ValidationError

        from refcal.judges.risk import RiskScore

        try:
            return refusal_class(RiskScore.model_validate(logged))
        except ValidationError:
            return None

    def _remember(self, prompt: str, found: RefusalClass) -> None:
        self._cache[prompt] = found
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
