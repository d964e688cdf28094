"""The design search of benchmarks/adaptive_search.py (issue 18's ceiling): on a pool small enough
to enumerate, the search finds the exhaustive optimum within the budget, its relaxation bound is
no higher than that optimum, and on a real case the model's variance is the Fisher posterior's."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import adaptive_search
from adaptive_cases import fit_design, isoflop_final, load_cases

from scalinglab.sweep import information as info


def _model(seed: int, n: int = 12) -> adaptive_search.Fisher:
    rng = np.random.default_rng(seed)
    seed_rows = rng.normal(size=(3, 5))
    return adaptive_search.Fisher(
        np.eye(5) + seed_rows.T @ seed_rows,
        rng.normal(size=(n, 5)) * rng.uniform(0.2, 2.0, size=(n, 1)),
        rng.normal(size=5),
        rng.choice([1.0, 2.0, 4.0, 8.0], size=n),
        np.arange(100, 100 + n),
    )


def _exhaustive(model: adaptive_search.Fisher, budget: float) -> float:
    n = len(model.cost)
    best = np.inf
    for bits in itertools.product((False, True), repeat=n):
        mask = np.array(bits)
        if model.cost[mask].sum() <= budget:
            best = min(best, model.variance(mask))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_finds_the_exhaustive_optimum_within_the_budget(seed: int) -> None:
    model = _model(seed)
    budget = 0.4 * model.cost.sum()
    found = adaptive_search.search(model, budget, 4, np.random.default_rng(seed))
    assert all(model.cost[list(d)].sum() <= budget + 1e-9 for d in found)
    optimum = _exhaustive(model, budget)
    assert min(found.values()) == pytest.approx(optimum, rel=1e-9)
    bound = adaptive_search.relaxed_bound(model, budget)
    assert 0 < bound <= optimum * (1 + 1e-9)


def test_a_local_optimum_has_no_improving_swap() -> None:
    model = _model(5, n=20)
    budget = 0.3 * model.cost.sum()
    mask = adaptive_search.improve(model, np.zeros(20, dtype=bool), budget)
    value = model.variance(mask)
    for out, into in itertools.product(np.flatnonzero(mask), np.flatnonzero(~mask)):
        trial = mask.copy()
        trial[out], trial[into] = False, True
        if model.cost[trial].sum() <= budget:
            assert model.variance(trial) >= value * (1 - 1e-9)
    # Nothing left in the budget would still fit.
    assert not np.any(~mask & (model.cost <= budget - model.cost[mask].sum()))


@pytest.mark.filterwarnings("ignore")
def test_the_model_of_a_real_case_is_the_fisher_posterior_over_seed_and_design() -> None:
    case = load_cases(configs=1)[1]
    model = adaptive_search.Fisher.of(case)
    full, total = isoflop_final(case)
    assert total > 0 and set(case.seed) <= set(full)
    assert not set(model.index) & set(case.seed)
    # Independently: the whole pool's fit, its Jacobian at seed and design, information.posterior.
    fitted, _ = fit_design(case, np.arange(len(case.runs)), bootstrap=0)
    law = fitted.law_object
    raw = law.to_raw(fitted.params)
    runs = case.runs.loc[full]
    n, d = runs["params"].to_numpy(), runs["tokens"].to_numpy()
    pool = case.runs
    scale = info.residual_scale(
        law, raw, pool["params"].to_numpy(), pool["tokens"].to_numpy(), pool["loss"].to_numpy()
    )
    grad = info.gradient(law, raw, case.target)[1]
    direct = grad @ info.posterior(info.jacobian(law, raw, n, d), scale) @ grad
    assert model.variance(np.isin(model.index, full)) == pytest.approx(direct, rel=1e-6)
    labels = [label for label, _ in adaptive_search.pools(case, model)]
    assert len(labels) == len(set(labels)) == 8
    for label, sub in adaptive_search.pools(case, model):
        assert set(sub.index) <= set(model.index)
        if label.startswith("band"):
            assert set(sub.index) <= case.in_band
    described = adaptive_search.describe(case, [i for i in full if i not in case.seed])
    assert described.startswith("top 5, -1 5")
