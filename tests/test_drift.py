"""The drift correction (procedures.drift): the signed inner-backtest error's growth with the
extrapolation factor, estimated, shrunk, and taken off the predictions of the ``*-drift``
procedures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from scalinglab import load_runs
from scalinglab.fitting import FitWarning
from scalinglab.procedures import PROCEDURES, ProcedureError, fit_procedure, get_procedure
from scalinglab.procedures.drift import estimate_drift
from scalinglab.procedures.registry import Procedure


def _inner_like(slope: float, noise: float, seed: int = 0):
    """Signed log errors at three nested cuts (factors 1-2, 1-4, 1-8), as an inner backtest
    gives them, with a known drift per e-fold and independent noise."""
    rng = np.random.default_rng(seed)
    errors, factors, cuts = [], [], []
    for i, top in enumerate((2.0, 4.0, 8.0)):
        x = np.geomspace(1.05, top, 12)
        errors.append(slope * np.log(x) + rng.normal(0.0, noise, x.size))
        factors.append(x)
        cuts.append(np.full(x.size, i))
    return np.concatenate(errors), np.concatenate(factors), np.concatenate(cuts)


def test_a_clear_drift_is_measured_and_applied_almost_fully():
    e, x, g = _inner_like(0.01, 0.001)
    d = estimate_drift(e, x, g, scatter=0.001)
    assert d.slope == pytest.approx(0.01, abs=0.001)
    assert d.shrink > 0.9 and d.per_efold == pytest.approx(d.shrink * d.slope)
    assert d.n_cuts == 3 and d.n_points == e.size
    # the corrected errors grow far less than the raw ones; the correction's sd is counted
    assert d.sd <= d.growth < 0.005


def test_noise_alone_is_not_extrapolated():
    drifts = [estimate_drift(*_inner_like(0.0, 0.01, seed), scatter=0.01) for seed in range(50)]
    # a third or more of the draws of pure noise are not corrected at all (|slope| < its se),
    # and the rest only in part: on average less than half the raw slope is applied
    assert sum(d.per_efold == 0.0 for d in drifts) >= 17
    applied = np.mean([abs(d.per_efold) for d in drifts])
    assert applied < 0.5 * np.mean([abs(d.slope) for d in drifts])


def test_an_outlier_does_not_set_the_slope():
    e, x, g = _inner_like(0.0, 0.001)
    e[np.argmax(x)] += 0.3  # one inner test run 35% off, at the largest factor
    assert abs(estimate_drift(e, x, g, scatter=0.001).slope) < 0.003


def test_one_cut_or_only_continuations_give_no_correction():
    e, x, g = _inner_like(0.02, 0.001)
    one = g == 2
    d = estimate_drift(e[one], x[one], g[one], scatter=0.001)
    assert math.isinf(d.se) and d.per_efold == 0.0
    # every inner error a later checkpoint of a fitted run: the schedule, not scale
    d = estimate_drift(e, x, g, scatter=0.001, continued=np.ones(e.size, dtype=bool))
    assert d.per_efold == 0.0 and d.n_points == 0 and math.isfinite(d.growth)


def _grid(penalty: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IsoFLOP grids (seven sizes per budget, 1e17-8e20 FLOP) from Hoffmann et al.'s law, the
    runs away from each budget's optimum worse than the law by exp(penalty · log2(N/N_opt)²)
    (hyperparameters tuned at the optimum, as in many sweeps): they pull a fit of every run
    up, and its over-prediction grows with scale. Fit ≤ 1.3e19; truth: the three runs nearest
    the optimum at each budget ≥ 1e20 (8-64× beyond)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(14):
        c = 1e17 * 2.0**k
        n_opt = 0.6 * (c / 6) ** 0.5
        for j in range(-3, 4):
            n = n_opt * 2.0 ** (j * 0.75)
            d = c / (6 * n)
            loss = 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28
            loss *= math.exp(penalty * (j * 0.75) ** 2 + rng.normal(0.0, 0.002))
            rows.append({"params": n, "tokens": d, "flops": c, "loss": loss, "near": abs(j) <= 1})
    fr = pd.DataFrame(rows)
    train = fr[fr.flops <= 1.3e19].drop(columns="near")
    return train, fr[(fr.flops >= 1e20) & fr.near].drop(columns="near")


def _fit(name: str, train: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fit_procedure(name, load_runs(train), bootstrap=5, planner=False)


def _log_error(pf, test: pd.DataFrame) -> float:
    pred = pf.predict(params=test["params"].to_numpy(), tokens=test["tokens"].to_numpy())
    return float(np.mean(np.log(pred / test["loss"].to_numpy())))


def test_drift_correction_lowers_a_scale_dependent_over_prediction():
    train, test = _grid(0.005)
    plain, drift = _fit("plain", train), _fit("plain-drift", train)
    assert drift.drift is not None and drift.drift.per_efold > 0.005
    before, after = _log_error(plain, test), _log_error(drift, test)
    assert before > 0.03  # the off-optimal runs pull the fit up, more so further out
    assert abs(after) < 0.02 and after < before - 0.03
    # the correction is in the prediction, the interval and the JSON; within the fitted runs
    # (factor 1) nothing moves
    lo, hi = drift.interval(params=1e10, tokens=2e11)
    assert lo < drift.predict(params=1e10, tokens=2e11) < hi
    inside = train.iloc[-1]
    assert drift.predict(params=inside.params, tokens=inside.tokens) == pytest.approx(
        plain.predict(params=inside.params, tokens=inside.tokens), rel=1e-9
    )
    assert drift.to_dict()["drift"]["applied_per_efold"] == drift.drift.per_efold
    assert "drift of the inner errors" in drift.why


def test_drift_correction_stays_near_zero_without_a_bias():
    train, test = _grid(0.0)
    plain, drift = _fit("plain", train), _fit("plain-drift", train)
    x = test["flops"].max() / train["flops"].max()
    assert abs(drift.drift.per_efold) * math.log(x) < 0.003
    assert _log_error(drift, test) == pytest.approx(_log_error(plain, test), abs=0.003)


def test_drift_procedures_are_registered_on_their_bases():
    for base in ("plain", "frontier", "average-frontier"):
        p, b = get_procedure(f"{base}-drift"), get_procedure(base)
        assert p.drift_correction and not b.drift_correction
        same = ("kind", "members", "bounds", "near_frontier", "min_flops_ratio")
        assert all(getattr(p, f) == getattr(b, f) for f in same)
        # the base's own recipe is the drift procedure's own fit, not fitted again to plan
        assert set(p.planners) == set(b.planners) - {base}
        assert p.describe()["drift_correction"] is True
    assert not any(PROCEDURES[c].drift_correction for c in PROCEDURES["auto"].candidates)
    with pytest.raises(ProcedureError, match="drift_correction"):
        Procedure(name="x", summary="", kind="auto", candidates=("plain",), drift_correction=True)
