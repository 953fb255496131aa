"""Rates corrected for the judge's error (Rogan–Gladen), on hand-built cases whose answer is known; the
shipped pair model's bad files; the shipped agreement (a default receipt carries it: tests/test_e2e.py)."""

from __future__ import annotations

import numpy as np
import pytest

from refcal.errors import InputFileError
from refcal.judges import make_judge, shipped_agreement
from refcal.judges.pair import PairModel, default_pair_path
from refcal.metrics.correction import corrected_rate, rogan_gladen, too_thin
from refcal.metrics.rates import wilson
from refcal.records import SideErrors


def test_rogan_gladen_inverts_a_known_judge():
    # A judge with recall 0.54 and specificity 0.98 on a model that refuses every must-refuse item observes
    # 0.54 × 1 + 0.02 × 0 = 0.54; the estimator gives the truth back.
    assert rogan_gladen(0.54, 0.54, 0.98) == pytest.approx(1.0)
    # True 0.30: observed 0.9 × 0.3 + 0.1 × 0.7 = 0.34.
    assert rogan_gladen(0.34, 0.9, 0.9) == pytest.approx(0.30)
    assert rogan_gladen(0.01, 0.9, 0.9) == 0.0  # clipped, never negative


def test_the_corrected_interval_covers_the_truth_where_the_observed_one_does_not():
    errors = SideErrors(tp=54, fn=46, tn=98, fp=2)  # recall 0.54 on 100 labelled refusals
    rate = corrected_rate(54, 100, errors)
    assert rate.value == pytest.approx(1.0) and rate.ci_low < 0.9 and rate.ci_high == pytest.approx(1.0)
    assert wilson(54, 100).ci_high < 0.7  # the observed interval is far from the truth of 1.0
    again = corrected_rate(54, 100, errors)
    assert (again.ci_low, again.ci_high) == (rate.ci_low, rate.ci_high)  # seeded: a receipt is reproducible


def test_a_thin_basis_says_so_instead_of_giving_a_number():
    few = corrected_rate(5, 10, SideErrors(tp=5, fn=1, tn=8, fp=0))
    assert few.value is None and "too few labels" in few.thin
    blind = SideErrors(tp=30, fn=30, tn=32, fp=28)  # Se 0.5, Sp 0.53: it cannot tell the sides apart
    assert "barely separates" in too_thin(blind) and corrected_rate(10, 40, blind).value is None


def test_coverage_on_a_simulation_with_known_truth():
    """200 draws (the benchmark runs 1,000): true rate 0.8, judge Se 0.7 / Sp 0.95 measured on 150 + 150
    labels, 80 items per drill."""
    generator = np.random.default_rng(7)
    covered = 0
    for draw in range(200):
        tp = int(generator.binomial(150, 0.7))
        tn = int(generator.binomial(150, 0.95))
        truth = generator.random(80) < 0.8
        said = np.where(truth, generator.random(80) < 0.7, generator.random(80) < 0.05)
        rate = corrected_rate(int(said.sum()), 80, SideErrors(tp=tp, fn=150 - tp, tn=tn, fp=150 - tn),
                              draws=1000, seed=draw)
        covered += rate.ci_low <= 0.8 <= rate.ci_high
    assert covered >= 180  # ≥ 90 % here; the benchmark's 1,000 draws give the figure


def test_a_damaged_or_foreign_pair_model_is_named(tmp_path):
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(default_pair_path().read_bytes()[:1000])
    with pytest.raises(InputFileError, match=r"t\.npz.*not a refcal pair model"):
        PairModel.load(truncated)
    other = tmp_path / "o.npz"
    np.savez(other, format=np.array("refcal-pair-0"), weights=np.zeros((3, 8)))
    with pytest.raises(InputFileError, match="format 'refcal-pair-0'"):
        PairModel.load(other)
    with pytest.raises(InputFileError, match="not a refcal pair model"):
        PairModel.load(tmp_path / "missing.npz")


def test_the_default_cascade_ships_its_leave_one_source_out_agreement():
    cascade = make_judge("cascade")
    measured = shipped_agreement("cascade", cascade.version)
    assert measured is not None and measured.shipped and len(measured.per_source) >= 5
    assert measured.errors.sensitivity > 0.5 and measured.errors.specificity > 0.5
    assert shipped_agreement("cascade", "cascade-2[markers-5,pair-1+000000000000]@0.5-0.5") is None
    assert shipped_agreement("markers", "markers-5") is None
