"""Rolling-origin backtests, the nested automatic choice, prediction intervals and verdicts."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from scalinglab import load_runs
from scalinglab.fitting import FitWarning
from scalinglab.procedures import (
    BacktestError,
    Procedure,
    ProcedureFit,
    backtest,
    fit_procedure,
    get_procedure,
    inner_backtest,
)
from scalinglab.procedures.prediction import MAX_PROJECTED_ERROR
from scalinglab.report.extrapolation import backtest_figure

# Besiroglu et al. (2024, Table 1) fitted values, used only to generate synthetic runs.
TRUTH = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37}


def isoflop_frame(
    budgets, per_budget: int = 4, noise: float = 0.004, seed: int = 0, octaves: float = 1.6
):
    """Runs on IsoFLOP curves around the true compute-optimal N (×2^-octaves … ×2^octaves)."""
    rng = np.random.default_rng(seed)
    a = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])
    g = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (
        1 / (TRUTH["alpha"] + TRUTH["beta"])
    )
    rows = []
    for c in budgets:
        n_opt = g * (c / 6) ** a
        for k in np.linspace(-octaves, octaves, per_budget):
            n = n_opt * 2.0**k
            d = c / (6 * n)
            law = TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]
            rows.append(
                {
                    "params": n,
                    "tokens": d,
                    "flops": c,
                    "loss": law * math.exp(noise * rng.standard_normal()),
                }
            )
    return pd.DataFrame(rows)


BUDGETS = 1e18 * 2.0 ** np.arange(10)  # 1e18 … 5.1e20
CUT = 6.4e19  # 7 budgets fitted, 3 predicted (×2 … ×8)


@pytest.fixture(scope="module")
def synthetic():
    return isoflop_frame(BUDGETS)


@pytest.fixture(scope="module")
def epoch(shared_data):
    frame = pd.read_csv(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv")
    return load_runs(frame[frame["in_epoch_fit"]].drop(columns="in_epoch_fit"))


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fn(*args, **kwargs)


# -- no peeking ---------------------------------------------------------------------------------


def test_runs_above_the_cut_do_not_change_the_fit():
    """The automatic choice reads only the runs being fitted: adding runs above the cut, or
    removing some, leaves the choice and every fitted parameter unchanged."""
    cut = 8e18  # four budgets (16 runs) fitted, three above: small, so the test stays fast
    synthetic = isoflop_frame(1e18 * 2.0 ** np.arange(7), seed=11)
    above = synthetic["flops"] > cut
    fewer = synthetic[~above | (synthetic.index % 2 == 0)]
    extra = pd.concat(
        [
            synthetic,
            pd.DataFrame(  # absurd runs far above the cut: loss 9 at 10× the largest budget
                {
                    "params": [1e9, 3e9],
                    "tokens": [1e12, 3e11],
                    "flops": [6e21, 5.4e21],
                    "loss": [9.0, 9.0],
                }
            ),
        ],
        ignore_index=True,
    )
    results = [
        _quiet(backtest, load_runs(f), ["auto"], cuts=[cut], bootstrap=0) for f in (fewer, extra)
    ]
    direct = _quiet(
        fit_procedure, "auto", load_runs(synthetic[~above].reset_index(drop=True)), bootstrap=0
    )
    for r in results:
        row = r.fits.iloc[0]
        assert row["chosen"] == direct.chosen
        assert row["why"] == direct.why
        # Bit-identical parameters, not merely close.
        assert row["params"] == [dict(f.params) for f in direct.fits]
    # And the held-out predictions the two share are the same numbers.
    merged = results[0].predictions.merge(
        results[1].predictions, on=["params", "tokens"], suffixes=("", "_fewer")
    )
    assert len(merged) > 0
    np.testing.assert_array_equal(merged["predicted"], merged["predicted_fewer"])


def test_inner_backtest_scores_only_runs_inside(synthetic):
    runs = load_runs(synthetic[synthetic["flops"] <= CUT].reset_index(drop=True))
    inner = _quiet(inner_backtest, ["frontier", "average-frontier"], runs, cuts=(2.0, 4.0))
    c_max = runs.column("flops").max()
    assert inner.cuts_flops == pytest.approx((c_max / 4, c_max / 2))  # deepest origin first
    for name in ("frontier", "average-frontier"):
        x = inner.factors[name]
        assert np.all(x > 1) and np.all(x <= 4 * (1 + 1e-9))
        assert len(inner.cut_errors[name]) == 2
        assert inner.errors[name] == pytest.approx(np.mean(np.abs(inner.log_errors[name])))
    with pytest.raises(BacktestError, match="> 1"):
        inner_backtest(["frontier"], runs, cuts=(0.5,))


def test_stacked_average_weighs_its_members_by_their_inner_errors(synthetic):
    runs = load_runs(synthetic[synthetic["flops"] <= CUT].reset_index(drop=True))
    inner = _quiet(inner_backtest, ["stacked-frontier"], runs)
    err = np.array([inner.member_errors[m] for m in ("frontier", "kaplan-frontier")])
    expected = (1 / err**2) / np.sum(1 / err**2)
    pf = _quiet(fit_procedure, "stacked-frontier", runs, bootstrap=0)
    # The members' own errors set the weights, not the average's (once equal weights by mistake).
    np.testing.assert_allclose(pf.weights, expected, rtol=1e-9)
    assert abs(pf.weights[0] - pf.weights[1]) > 0.05
    assert get_procedure("stacked-frontier").members == ("frontier", "kaplan-frontier")


# -- the automatic choice says what it did ------------------------------------------------------


def test_auto_says_what_it_chose_and_why(synthetic):
    runs = load_runs(synthetic[synthetic["flops"] <= CUT].reset_index(drop=True))
    pf = _quiet(fit_procedure, "auto", runs, bootstrap=0)
    assert pf.procedure == "auto"
    assert pf.chosen in ("besiroglu2024", "bounded", "compute-weighted", "frontier",
                         "kaplan-frontier", "average-frontier")  # fmt: skip
    assert pf.chosen in pf.why
    assert set(pf.inner_errors) >= {"besiroglu2024", "average-frontier"}
    assert math.isclose(sum(pf.weights), 1.0)
    d = pf.to_dict()
    assert json.dumps(d, allow_nan=True)
    assert d["chosen"] == pf.chosen and d["why"] == pf.why


def test_auto_on_too_few_runs_falls_back_and_says_so():
    frame = isoflop_frame(1e18 * 2.0 ** np.arange(2), per_budget=4)
    pf = _quiet(fit_procedure, "auto", load_runs(frame), bootstrap=0)
    # Eight runs on two budgets: below C_max/2 lie four runs, too few for any law here, so
    # there is no inner backtest; the default's trust filter then leaves too few runs to fit.
    assert pf.inner_errors == {}
    assert "no inner backtest" in pf.why and pf.chosen == "average-frontier"
    assert not pf.reliable
    assert any("no backtest inside the runs" in r for r in pf.reasons)


def test_auto_falls_back_when_its_choice_cannot_be_fitted():
    # One budget: three runs near the optimum, six far from it (N ×1/64 … ×64, over 5 % above
    # the best loss), so "frontier" trusts three runs: too few for five parameters.
    frame = pd.concat(
        [isoflop_frame([1e19], per_budget=3, octaves=0.2), isoflop_frame([1e19], 6, octaves=6)],
        ignore_index=True,
    )
    proc = Procedure(
        name="tiny-auto",
        summary="test",
        kind="auto",
        candidates=("frontier", "besiroglu2024"),
        default="frontier",
    )
    pf = _quiet(fit_procedure, proc, load_runs(frame), bootstrap=0)
    assert pf.chosen == "besiroglu2024"
    assert "fell back on besiroglu2024" in pf.why and "frontier cannot be fitted" in pf.why


# -- intervals ----------------------------------------------------------------------------------


def test_interval_adds_scatter_parameters_and_extrapolation(synthetic):
    runs = load_runs(synthetic[synthetic["flops"] <= CUT].reset_index(drop=True))
    pf = _quiet(fit_procedure, "frontier", runs, bootstrap=40)
    # The robust scatter of the trusted runs' log residuals recovers the generator's noise
    # (0.004) within sampling error (few runs: a factor of two either way).
    assert 0.002 < pf.scatter < 0.008
    near = pf.uncertainty(params=3e9, tokens=3e9 * 20)
    far_n, far_d = 3e10, 3e10 * 20
    far = pf.uncertainty(params=far_n, tokens=far_d)
    assert far["factor"][0] > near["factor"][0]
    assert far["extrapolation"][0] >= near["extrapolation"][0]
    assert np.all(far["parameters"] > 0)
    lo, hi = pf.interval(0.9, params=far_n, tokens=far_d)
    mid = pf.predict(params=far_n, tokens=far_d)
    assert lo < mid < hi
    sd = math.sqrt(
        far["parameters"][0] ** 2 + far["scatter"][0] ** 2 + far["extrapolation"][0] ** 2
    )
    # A log-normal interval: log(hi/mid) = z_0.95 · sd.
    # times the recipe's calibration on the extrapolation suite
    assert pf.interval_scale == get_procedure("frontier").interval_scale > 0
    assert math.log(hi / mid) == pytest.approx(1.6448536 * pf.interval_scale * sd, rel=1e-6)
    lo50, hi50 = pf.interval(0.5, params=far_n, tokens=far_d)
    assert lo < lo50 < hi50 < hi
    with pytest.raises(BacktestError, match="level"):
        pf.interval(1.5, params=far_n, tokens=far_d)


def test_intervals_cover_synthetic_held_out_runs():
    # Noise known (1 %), law right: the 90 % intervals must cover most held-out runs.
    frame = isoflop_frame(BUDGETS, per_budget=5, noise=0.01, seed=3)
    result = _quiet(backtest, load_runs(frame), ["frontier"], cuts=[CUT], bootstrap=40)
    coverage = result.predictions["covered"].mean()
    assert coverage >= 0.8


# -- verdicts -----------------------------------------------------------------------------------


def _pf(synthetic, **changes) -> ProcedureFit:
    runs = load_runs(synthetic[synthetic["flops"] <= CUT].reset_index(drop=True))
    pf = _quiet(fit_procedure, "frontier", runs, bootstrap=0)
    return replace(pf, **changes)


def test_verdict_flags_fast_error_growth(synthetic):
    pf = _pf(synthetic, growth=0.03)
    near = pf.assess(flops=pf.max_fitted_flops * 1.2, params=3e9)
    far = pf.assess(flops=pf.max_fitted_flops * 100, params=3e10)
    # 0.03 · ln 100 = 13.8 % > MAX_PROJECTED_ERROR; 0.03 · ln 1.2 = 0.5 % is not.
    assert 0.03 * math.log(1.2) < MAX_PROJECTED_ERROR < 0.03 * math.log(100)
    assert near.reliable
    assert not far.reliable and "grows fast" in far.reasons[0]


def test_verdict_flags_disagreeing_optima(synthetic):
    pf = _pf(synthetic)
    f = pf.fits[0]
    other = {**f.params, "E": f.params["E"] * 0.8}  # a near-optimum that predicts 10 % lower
    pf = replace(pf, fits=(replace(f, optima=(dict(f.params), other)),))
    v = pf.assess(params=1e11, tokens=2e12)
    assert not v.reliable and any("near-optimal solutions disagree" in r for r in v.reasons)


def test_published_fit_with_absurd_exponent_is_flagged(shared_data):
    frame = pd.read_csv(shared_data / "porian_isoflop" / "porian_isoflop_points.csv")
    runs = load_runs(frame[frame["config"] == "owt2|tuned|short|const|standard|val"])
    runs = runs.subset(runs.column("flops") <= 1.6e18)
    pf = _quiet(fit_procedure, "besiroglu2024", runs, bootstrap=0, inner_cuts=(4.0,))
    assert not pf.reliable
    assert any("implausible exponent alpha" in r for r in pf.reasons)
    assert pf.to_dict()["reliable"] is False


# -- the rolling-origin backtest ----------------------------------------------------------------


def test_backtest_reproduces_the_published_split(epoch):
    result = _quiet(backtest, epoch, ["besiroglu2024"], cuts=[1e21], bootstrap=0)
    p = result.predictions
    assert len(p) == 23 and set(p["procedure"]) == {"besiroglu2024"}
    # The figures for the published procedure: mean 1.05 %, worst 2.8 %.
    assert p["rel_error"].abs().mean() == pytest.approx(0.0105, abs=5e-4)
    assert p["rel_error"].abs().max() == pytest.approx(0.028, abs=1e-3)
    np.testing.assert_allclose(p["factor"], p["flops"] / result_max_fitted(epoch, 1e21))
    overall = result.overall().iloc[0]
    assert overall["mean_abs_error"] == pytest.approx(p["rel_error"].abs().mean())


def result_max_fitted(runs, cut):
    flops = runs.column("flops")
    return flops[flops <= cut].max()


def test_rolling_origin_groups_and_summaries(synthetic):
    frame = pd.concat(
        [
            isoflop_frame(BUDGETS[:7], seed=4).assign(group="a"),
            isoflop_frame(BUDGETS[:7], seed=5).assign(group="b"),
        ],
        ignore_index=True,
    )
    calls = []
    result = _quiet(
        backtest,
        load_runs(frame),
        ["besiroglu2024", "frontier"],
        n_cuts=2,
        group_by="group",
        bootstrap=0,
        inner_cuts=(2.0,),
        progress=lambda done, total: calls.append((done, total)),
    )
    # Two groups × two default cuts (C_max/2, C_max/4) × two procedures.
    assert calls[-1] == (8, 8)
    assert len(result.fits) == 8
    assert set(result.predictions["group"]) == {"a", "b"}
    g = result.by_group()
    assert set(g["group"]) == {"a", "b"} and {"reliable", "reasons", "chosen"} <= set(g.columns)
    overall = result.overall()
    assert list(overall["procedure"]) == ["besiroglu2024", "frontier"]
    assert (overall["groups"] == 2).all()
    by_factor = result.by_factor()
    assert by_factor["n"].sum() == len(result.predictions)
    # Rolling origin: the cut at C_max/4 predicts ×2 and ×4 runs, the one at C_max/2 ×2 only.
    assert set(by_factor["factor_bin"]) == {"[2.0, 4.0)", "[4.0, 8.0)"}
    data = json.loads(json.dumps(result.to_dict()))
    assert {"overall", "by_group", "by_factor", "fits", "predictions"} <= set(data)
    assert {"reliable", "reasons"} <= set(data["fits"][0])


def test_min_factor_keeps_only_far_predictions(synthetic):
    result = _quiet(
        backtest, load_runs(synthetic), ["besiroglu2024"], cuts=[CUT], min_factor=4, bootstrap=0
    )
    assert (result.predictions["flops"] >= 4 * CUT).all()
    assert (result.predictions["factor"] >= 4 - 1e-9).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"group_by": "colour"}, "colour"),
        ({"cuts": [1e10]}, "no cut"),
        ({"cuts": [-1.0]}, "cuts"),
        ({"min_factor": 0.5}, "min_factor"),
        ({"level": 1.2}, "level"),
        ({"cuts": [CUT], "min_factor": 1e6}, "no cut"),
    ],
)
def test_backtest_refuses_bad_options(synthetic, kwargs, message):
    with pytest.raises(BacktestError, match=message):
        backtest(load_runs(synthetic), ["besiroglu2024"], bootstrap=0, **kwargs)


def test_figure_draws_error_against_factor(synthetic, tmp_path):
    result = _quiet(
        backtest, load_runs(synthetic), ["besiroglu2024"], n_cuts=2, bootstrap=0, inner_cuts=(2.0,)
    )
    fig = backtest_figure(result)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["besiroglu2024"]
    out = tmp_path / "bt.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the targets on the reference data (slow: the benchmark's own numbers) ---------------


@pytest.mark.slow
def test_default_meets_the_targets_on_the_reference_data(epoch, shared_data):
    chin = _quiet(backtest, epoch, ["auto"], cuts=[1e21], bootstrap=50)
    c = chin.overall().iloc[0]
    assert c["mean_abs_error"] <= 0.008
    assert c["coverage"] >= 0.85
    frame = pd.read_csv(shared_data / "porian_isoflop" / "porian_isoflop_points.csv")
    por = _quiet(
        backtest,
        load_runs(frame),
        ["auto"],
        cuts=[1.6e18],
        min_factor=8,
        group_by="group",
        bootstrap=50,
    )
    g = por.by_group()
    assert g["mean_abs_error"].mean() <= 0.03
    assert ((g["mean_abs_error"] <= 0.05) | ~g["reliable"].astype(bool)).all()
    assert por.predictions["covered"].mean() >= 0.85
