"""Plans you can trust: identification of the split of N and D, the planner, the allocation
backtest (scalinglab.procedures.allocation, scalinglab.fitting.allocation)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.approaches import isoflop_points
from scalinglab.cli import app
from scalinglab.fitting import PLAUSIBLE_EXPONENTS, Fit
from scalinglab.fitting import fit as fit_law
from scalinglab.fitting.allocation import MAX_A_WIDTH, allocation_exponent, allocation_reasons
from scalinglab.plan import PlanError, allocate
from scalinglab.procedures import (
    DEFAULT_PROCEDURE,
    PROCEDURES,
    BacktestError,
    Procedure,
    backtest,
    fit_procedure,
    with_planner,
)
from scalinglab.procedures.allocation import (
    AllocationError,
    check_allocation,
    isoflop_minima,
    optimal_params,
)
from scalinglab.runs import load_runs

runner = CliRunner()
# Hoffmann et al. (2022), Approach 3 (their eq. 10): the law the synthetic runs follow.
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
A_TRUE = HOFFMANN["beta"] / (HOFFMANN["alpha"] + HOFFMANN["beta"])
FRONTIER_BOUNDS = PLAUSIBLE_EXPONENTS["chinchilla"]


def _loss(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    p = HOFFMANN
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def _closed_form_n(flops: np.ndarray) -> np.ndarray:
    # Hoffmann et al. (2022), eq. 4: N_opt = G (C/6)^a, G = (αA/(βB))^(1/(α+β)).
    p = HOFFMANN
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    return g * (flops / 6) ** A_TRUE


def isoflop_runs(budgets: np.ndarray, noise: float = 0.003, seed: int = 0) -> pd.DataFrame:
    """IsoFLOP profiles of the Hoffmann law: 7 sizes a factor 2 apart around each optimum."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt = _closed_form_n(np.array([c]))[0]
        for k in range(-3, 4):
            n = n_opt * 2.0**k
            d = c / (6 * n)
            loss = float(_loss(np.array([n]), np.array([d]))[0]) * math.exp(noise * rng.normal())
            rows.append({"params": n, "tokens": d, "loss": loss})
    return pd.DataFrame(rows)


def frontier_runs(noise: float = 0.003, seed: int = 1) -> pd.DataFrame:
    """The compute-optimal frontier alone: one run per budget, N on the optimum."""
    rng = np.random.default_rng(seed)
    flops = np.geomspace(1e17, 1e21, 24)
    n = _closed_form_n(flops)
    d = flops / (6 * n)
    loss = _loss(n, d) * np.exp(noise * rng.normal(size=n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


def test_optimal_params_matches_the_closed_form():
    fit = Fit.from_params("chinchilla", HOFFMANN)
    flops = np.array([1e18, 5.76e23, 1e26])
    np.testing.assert_allclose(optimal_params(fit, flops), _closed_form_n(flops), rtol=2e-3)


def test_kaplan_a_is_the_slope_of_its_optimum():
    # Kaplan et al. (2020), Table 2: alpha_N = 0.076, alpha_D = 0.103, N_c = 6.4e13, D_c = 1.8e13.
    fit = Fit.from_params(
        "kaplan-nd", {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
    )
    a, _ = allocation_exponent(fit)
    n = optimal_params(fit, np.array([1e20, 1e24]))
    assert a == pytest.approx(0.103 / (0.076 + 0.103))
    assert math.log10(n[1] / n[0]) / 4 == pytest.approx(a, abs=2e-3)


def _with_draws(a_draws: np.ndarray) -> Fit:
    # Bootstrap rows whose a = β/(α+β) takes the given values (α + β held at 0.62).
    rows = np.array([[1.69, 406.4, 410.7, 0.62 * (1 - a), 0.62 * a] for a in a_draws], dtype=float)
    return Fit.from_params("chinchilla", HOFFMANN, bootstrap_params=rows)


def test_a_interval_wider_than_the_published_gap_is_a_reason():
    narrow = _with_draws(np.linspace(0.42, 0.48, 200))
    wide = _with_draws(np.linspace(0.2, 0.6, 200))
    assert allocation_reasons(narrow) == []
    (reason,) = allocation_reasons(wide)
    assert "wider than 0.23" in reason and "do not tell N from D" in reason
    a, (lo, hi) = allocation_exponent(wide)
    assert a == pytest.approx(A_TRUE) and hi - lo > MAX_A_WIDTH


def test_law_of_compute_alone_cannot_split():
    fit = Fit.from_params(
        "power", {"E": 1.7, "A": 100.0, "alpha": 0.05}, law_options={"x": "flops"}
    )
    (reason,) = allocation_reasons(fit)
    assert "cannot split a budget" in reason


def test_isoflop_points_measures_a_single_budget():
    runs = load_runs(isoflop_runs(np.array([1e19]), noise=0.0))
    points, refused = isoflop_points(runs)
    assert refused == () and len(points) == 1
    assert points["params_opt"].iloc[0] == pytest.approx(
        _closed_form_n(np.array([1e19]))[0], rel=0.1
    )


def test_frontier_only_fit_refuses_to_plan_with_the_reason():
    runs = load_runs(frontier_runs())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = fit_procedure("bounded", runs, bootstrap=20)
    assert pf.planner is not None and pf.planner.fit is None
    assert "frontier alone" in pf.planner.why
    with pytest.raises(AllocationError, match="frontier alone"):
        _ = pf.plan_fit
    with pytest.raises(PlanError, match=r"must not plan.*frontier alone") as info:
        allocate(pf.fit, 1e22)
    assert info.value.field == "fit"
    # The refusal travels with the saved fit.
    with pytest.raises(PlanError, match="frontier alone"):
        allocate(Fit.from_json(pf.fit.to_json()), 1e22)


def test_a_frontier_recipe_plans_from_one_of_its_planners():
    # On IsoFLOP profiles, a recipe trusting only the runs within 0.5% of each budget's best
    # keeps too little of each profile to tell N from D: it may predict loss along the frontier,
    # but another fit must split budgets.
    runs = load_runs(isoflop_runs(np.geomspace(1e17, 1e20, 7)))
    tight = Procedure(
        name="tight-frontier", summary="test", near_frontier=0.005, bounds=FRONTIER_BOUNDS
    )
    with_planner = replace(tight, planners=("bounded",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = fit_procedure(tight, runs, bootstrap=20)
        helped = fit_procedure(with_planner, runs, bootstrap=20)
    assert alone.planner.fit is None and "can split a budget" in alone.planner.why
    assert helped.chosen == "tight-frontier"  # the loss still comes from the frontier fit
    assert helped.planner.name == "bounded" and "IsoFLOP minima" in helped.planner.why
    own = next(c for c in helped.planner.checks if c.procedure == "tight-frontier")
    assert not own.identified
    assert allocate(helped.fit, 5.76e23).a == pytest.approx(A_TRUE, abs=0.03)


def test_a_direct_fit_plans_with_a_planner_when_it_cannot_split():
    # A fit whose exponent is pinned on a bound must not plan; with_planner finds one that may.
    runs = load_runs(isoflop_runs(np.geomspace(1e17, 1e20, 7)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pinned = fit_law("chinchilla", runs, bounds={"alpha": (0.05, 0.1)})
        planned, planner = with_planner(pinned, runs, bootstrap=0)
    assert planner.fit is not None and planner.name != "this fit"
    assert not next(c for c in planner.checks if c.procedure == "this fit").identified
    assert planned.params == pinned.params  # the loss is still the fit's own
    assert allocate(planned, 5.76e23).a == pytest.approx(A_TRUE, abs=0.03)
    # an identified fit without other planners plans itself, and the saved fit says so
    good = fit_law("chinchilla", runs)
    planned, planner = with_planner(good, runs, planners=(), bootstrap=0)
    assert planner.name == "this fit"
    assert Fit.from_json(planned.to_json()).diagnostics["allocation"]["planner_fit"] is None


def test_cli_fit_names_the_fit_that_plans(tmp_path):
    path = tmp_path / "runs.csv"
    isoflop_runs(np.geomspace(1e17, 1e20, 7)).to_csv(path, index=False)
    out = runner.invoke(app, ["fit", str(path), "--out", str(tmp_path / "fit.json")])
    assert out.exit_code == 0, out.output
    assert "plans with " in out.output and "IsoFLOP minima" in out.output


def test_registered_planners_are_single_recipes():
    for proc in PROCEDURES.values():
        for name in proc.planners:
            assert PROCEDURES[name].kind == "single", (proc.name, name)


def test_profiles_let_the_planner_find_the_true_split():
    runs = load_runs(isoflop_runs(np.geomspace(1e17, 1e20, 7)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = fit_procedure("bounded", runs, bootstrap=20)
    assert pf.planner.name == "bounded"
    assert "IsoFLOP minima" in pf.planner.why
    (check,) = pf.planner.checks
    assert check.identified and check.n_profiles == 7
    assert check.profile_error_decades < 0.03
    plan = allocate(pf.fit, 5.76e23)
    assert plan.a == pytest.approx(A_TRUE, abs=0.03)
    assert plan.params_decades is not None and plan.params_decades > 0
    assert any(label.startswith("allocation a") for label, _ in plan.summary())


def test_allocation_backtest_on_held_out_profiles():
    runs = isoflop_runs(np.geomspace(1e17, 1.6e19, 8))
    result = backtest(runs, ["bounded"], cuts=[2e18], bootstrap=20, published_a=0.5)
    alloc = result.allocation
    assert len(alloc) == 3 and set(alloc["source"]) == {"isoflop"}
    assert alloc["log10_error"].abs().max() < 0.05
    overall = result.allocation_overall().set_index("procedure").loc["bounded"]
    assert overall["within_25"] == 1.0
    assert overall["a_abs_error"] == pytest.approx(abs(A_TRUE - 0.5), abs=0.03)
    # A given optimum column is used as it is: here the true optimum.
    given = runs.assign(n_true=_closed_form_n(6 * runs["params"] * runs["tokens"]))
    result = backtest(given, ["bounded"], cuts=[2e18], bootstrap=0, optimum_column="n_true")
    assert set(result.allocation["source"]) == {"n_true"}
    assert result.allocation["log10_error"].abs().max() < 0.05


def test_allocation_backtest_bad_options():
    runs = isoflop_runs(np.geomspace(1e17, 1.6e19, 8))
    with pytest.raises(BacktestError) as info:
        backtest(runs, ["bounded"], cuts=[2e18], bootstrap=0, optimum_column="nope")
    assert info.value.field == "optimum_column"
    with pytest.raises(BacktestError) as info:
        backtest(runs, ["bounded"], cuts=[2e18], bootstrap=0, published_a=1.5)
    assert info.value.field == "published_a"


def test_check_without_profiles_uses_width_and_spread():
    runs = load_runs(frontier_runs())
    fit = Fit.from_params("chinchilla", HOFFMANN)
    check = check_allocation(fit, runs, isoflop_minima(runs))
    assert check.n_profiles == 0 and math.isnan(check.profile_error_decades)
    assert not check.identified and check.size_spread_decades < 0.1


def test_cli_plan_from_a_frontier_only_fit_refuses_with_the_reason(tmp_path):
    runs = tmp_path / "frontier.csv"
    frontier_runs().to_csv(runs, index=False)
    fit = tmp_path / "fit.json"
    args = ["fit", str(runs), "--procedure", "bounded", "-B", "20", "--out", str(fit)]
    done = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "plans: none" in done.stdout and "frontier alone" in done.stdout
    done = runner.invoke(app, ["plan", "--fit", str(fit), "--budget", "1e22"])
    assert done.exit_code == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: --fit: this fit must not plan") and "frontier alone" in line


def test_cli_backtest_prints_the_allocation(tmp_path):
    runs = tmp_path / "isoflop.csv"
    isoflop_runs(np.geomspace(1e17, 1.6e19, 8)).to_csv(runs, index=False)
    args = ["backtest", str(runs), "-p", "bounded", "--cut", "2e18", "-B", "0"]
    # rich wraps tables to the terminal's width
    done = runner.invoke(app, [*args, "--published-a", "0.5"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "Allocation: planned N_opt" in done.stdout and "|a − 0.5|" in done.stdout
    done = runner.invoke(app, [*args, "--optimum-column", "nope"])
    assert done.exit_code == 2 and done.stderr.strip().startswith("error: --optimum-column:")


def test_optimal_params_of_many_resamples_in_chunks():
    point = np.array(list(HOFFMANN.values()))
    fit = Fit.from_params("chinchilla", HOFFMANN, bootstrap_params=np.tile(point, (3000, 1)))
    draws = optimal_params(fit, np.array([1e20, 1e22]), resamples=True)
    assert draws.shape == (3000, 2)
    point_n = optimal_params(fit, np.array([1e20, 1e22]))
    np.testing.assert_allclose(draws, np.broadcast_to(point_n, draws.shape))


@pytest.mark.slow
def test_chinchilla_default_plans_like_the_published_fits(shared_data):
    # Issue 19: the 240 rows Epoch fits; Hoffmann et al. (2022) a = 0.46–0.50, Besiroglu et al.
    # (2024) a = 0.51; Chinchilla itself is 7e10 parameters at 5.76e23 FLOP.
    frame = pd.read_csv(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv")
    runs = load_runs(frame[frame["in_epoch_fit"]].drop(columns="in_epoch_fit"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = fit_procedure(DEFAULT_PROCEDURE, runs, bootstrap=100)
    plan = allocate(pf.fit, 5.76e23)
    assert 0.45 <= plan.a <= 0.55
    assert 5e10 <= plan.params <= 1e11
    assert pf.planner.name is not None and pf.planner.why
