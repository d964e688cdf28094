"""The rankings benchmarks/adaptive_rankings.py reruns beside suggest's (issue 18): the sandwich
variance is the Fisher one when every residual is σ, its closed-form update matches a direct
recomputation, and a ranking swaps choose_runs' greedy only inside its block."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import adaptive_rankings

from scalinglab import fit, load_runs
from scalinglab.sweep import information as info
from scalinglab.sweep import suggest as suggest_module
from scalinglab.sweep.suggest import Candidate, Target, choose_runs

RNG = np.random.default_rng(3)
ROWS = RNG.normal(size=(9, 5))
GRAD = RNG.normal(size=5)
CANDIDATES = RNG.normal(size=(4, 5))


def _direct(rows: np.ndarray, e: np.ndarray) -> float:
    """gᵀA⁻¹MA⁻¹g from scratch (prior τ as in information.posterior)."""
    prior = np.eye(rows.shape[1]) / info.PRIOR_SD**2
    a_inv = np.linalg.inv(rows.T @ rows + prior)
    meat = (rows * e[:, None]).T @ rows + prior
    return float(GRAD @ a_inv @ meat @ a_inv @ GRAD)


def test_the_sandwich_is_the_fisher_variance_when_every_residual_is_sigma() -> None:
    state = adaptive_rankings.Sandwich(ROWS, np.where(np.arange(9) % 2, 1.0, -1.0))
    fisher = info.posterior(ROWS, 1.0)
    assert state.variance(GRAD) == pytest.approx(GRAD @ fisher @ GRAD, rel=1e-9)
    after = [GRAD @ info.add_points(fisher, c[None]) @ GRAD for c in CANDIDATES]
    assert state.after(GRAD, CANDIDATES) == pytest.approx(after, rel=1e-8)


def test_the_sandwich_update_matches_a_direct_recomputation() -> None:
    standardised = RNG.normal(scale=2.0, size=9)
    state = adaptive_rankings.Sandwich(ROWS, standardised)
    e = standardised**2
    assert state.variance(GRAD) == pytest.approx(_direct(ROWS, e), rel=1e-9)
    predicted = state.after(GRAD, CANDIDATES)
    for c, value in zip(CANDIDATES, predicted, strict=True):
        # The new run's squared residual is the runs' mean.
        assert value == pytest.approx(
            _direct(np.vstack([ROWS, c]), np.append(e, e.mean())), rel=1e-8
        )
    state.add(CANDIDATES[0])
    assert state.variance(GRAD) == pytest.approx(predicted[0], rel=1e-8)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("rank", ["sandwich", "members", "matched"])
def test_a_ranking_replaces_the_greedy_only_inside_its_block(rank: str) -> None:
    frame = pd.read_csv(REPO.parent / "shared/data/chinchilla_epoch/chinchilla_epoch_nd.csv")
    frame = frame.rename(columns={"N": "params", "D": "tokens", "C": "flops"})
    runs = load_runs(frame.iloc[::8][["params", "tokens", "flops", "loss"]])
    fitted = fit("chinchilla", runs, bootstrap=40, refine=2)
    target = Target.predict(7e10, 1.4e12)
    cands = [Candidate(n, 20 * n, 120 * n * n) for n in (3e8, 1e9, 3e9)]
    original = suggest_module._greedy
    with adaptive_rankings.ranking(rank, fitted, runs, target, [c.points[0] for c in cands]):
        assert suggest_module._greedy is not original
        s = choose_runs(fitted, runs, target, 1e22, cands, k=2)
    assert suggest_module._greedy is original
    assert 1 <= len(s.proposals) <= 2
    assert s.spent_flops <= 1e22
