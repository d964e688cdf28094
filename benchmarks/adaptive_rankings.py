"""Rankings tried for ``suggest`` on Porian (issue 18) and rejected; rerun by adaptive_design.py.

``choose_runs`` ranks candidates by the target-variance drop of its greedy (``_greedy``: the
bootstrap ensemble's covariance of the raw parameters, updated by each run's Fisher information).
Each alternative here replaces that greedy for one ``choose_runs`` call (:func:`ranking`), and
nothing else: the same candidates, budget, k, the two greedy passes and the Fisher report.

- ``sandwich``: the target's robust (sandwich, White 1980 HC0) variance under the linearised law,
  gᵀA⁻¹MA⁻¹g with A = Σ aᵢaᵢᵀ + I/τ² and M = Σ eᵢaᵢaᵢᵀ + I/τ² (aᵢ = jᵢ/σ, eᵢ = (rᵢ/σ)² the run's
  squared standardised residual, τ the weak prior counted as a pseudo-run with e = 1). It is what
  a bootstrap that resamples whole runs estimates: a prediction that hangs on a few runs far off
  the law is penalised. An unseen run's e is the runs' mean. Equals Fisher when every eᵢ = 1.
- ``members``: the ensemble's own predictions instead of its linearisation (an ensemble Kalman
  update): C, the covariance across bootstrap members of the target and every candidate's log
  loss; a candidate of points G removes C[t,G](C[G,G] + σ²I)⁻¹C[G,t], and C is conditioned on
  it before the next pick.
- ``matched``: the kept ensemble rule with a new run's noise inflated to the ensemble's units:
  σ²c, c = gᵀΣ_ens g / gᵀΣ_Fisher g (the ensemble is wider than Fisher by c along the target).

Kept out of ``src``: none met the issue's target on more data sets than the kept rule on both
halves of the benchmark (README, "sweep suggest"), so none replaced it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from scalinglab import Fit
from scalinglab.runs import Runs
from scalinglab.sweep import information as info
from scalinglab.sweep import suggest as suggest_module
from scalinglab.sweep.information import PRIOR_SD, Target

RANKS = ("ensemble", "sandwich", "members", "matched")


class Sandwich:
    """A⁻¹ and M of the runs at hand (see the module docstring) and their greedy."""

    def __init__(self, rows: np.ndarray, standardised: np.ndarray) -> None:
        e = np.asarray(standardised, dtype=float) ** 2
        prior = np.eye(rows.shape[1]) / PRIOR_SD**2
        self.inverse = np.linalg.pinv(rows.T @ rows + prior, hermitian=True)
        self.meat = (rows * e[:, None]).T @ rows + prior
        self.expected = float(e.mean())

    def variance(self, grad: np.ndarray) -> float:
        w = self.inverse @ grad
        return float(w @ self.meat @ w)

    def after(self, grad: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The sandwich variance after each single-point candidate (rows of ``a``):
        u = w − S aᵀ(a w)/(1 + a S aᵀ), var = uᵀMu + ē (a u)²."""
        w = self.inverse @ grad
        sa = a @ self.inverse
        u = w - sa * ((a @ w) / (1.0 + np.einsum("mp,mp->m", sa, a)))[:, None]
        return (
            np.einsum("mp,pq,mq->m", u, self.meat, u)
            + self.expected * np.einsum("mp,mp->m", a, u) ** 2
        )

    def add(self, row: np.ndarray) -> None:
        sa = row @ self.inverse
        self.inverse = self.inverse - np.outer(sa, sa) / (1.0 + sa @ row)
        self.meat = self.meat + self.expected * np.outer(row, row)


def member_covariance(fitted: Fit, target: Target, points: np.ndarray) -> np.ndarray:
    """Covariance across bootstrap members of the target's log loss (first) and each point's."""
    law = fitted.law_object
    raw = law.raw_array(fitted.bootstrap_params)
    xs = np.vstack([[target.params, target.tokens], points])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        table = law.log_predict_at(raw, {"params": xs[:, 0], "tokens": xs[:, 1]})
    return np.cov(table[np.all(np.isfinite(table), axis=1)], rowvar=False)


@contextmanager
def ranking(
    rank: str, fitted: Fit, runs: Runs, target: Target, points: Sequence[tuple[float, float]]
) -> Iterator[None]:
    """Inside, ``choose_runs`` ranks with ``rank`` (single-point candidates at ``points``, in the
    order given to it; a prediction target)."""
    if rank == "ensemble":
        yield
        return
    law = fitted.law_object
    raw = law.to_raw(fitted.params)
    n, d, loss = runs.column("params"), runs.column("tokens"), runs.column("loss")
    scale = info.residual_scale(law, raw, n, d, loss)
    jac = info.jacobian(law, raw, n, d)
    standardised = (np.log(loss) - law.log_predict_at(raw, {"params": n, "tokens": d})[0]) / scale
    original = suggest_module._greedy

    def greedy(
        sigma: np.ndarray,
        grad: np.ndarray,
        a: np.ndarray,
        groups: Sequence[np.ndarray],
        cost: np.ndarray,
        budget: float,
        k: int,
        per_flop: bool,
        excludes: Sequence[np.ndarray],
    ) -> list[tuple[int, float]]:
        assert all(len(g) == 1 for g in groups), "the benchmark offers single runs only"
        if rank == "matched":
            fisher = float(grad @ info.posterior(jac, scale) @ grad)
            c = max(float(grad @ sigma @ grad) / fisher, 1.0)
            return original(
                sigma, grad, a / math.sqrt(c), groups, cost, budget, k, per_flop, excludes
            )
        if rank == "sandwich":
            state = Sandwich(jac / scale, standardised)
            return info.pick_greedily(
                state.variance(grad),
                lambda: state.variance(grad) - state.after(grad, a),
                lambda i: state.add(a[i]),
                cost,
                budget,
                k,
                per_flop,
                excludes,
            )
        cov = [member_covariance(fitted, target, np.asarray(points, dtype=float))]

        def drops() -> np.ndarray:
            c = cov[0]
            return c[0, 1:] ** 2 / (np.diag(c)[1:] + scale**2)

        def bought(i: int) -> None:
            c = cov[0]
            cov[0] = c - np.outer(c[:, 1 + i], c[1 + i]) / (c[1 + i, 1 + i] + scale**2)

        return info.pick_greedily(cov[0][0, 0], drops, bought, cost, budget, k, per_flop, excludes)

    suggest_module._greedy = greedy
    try:
        yield
    finally:
        suggest_module._greedy = original
