"""The demo's prediction intervals: for a new run, not only for the law's parameters.

A bootstrap interval says how well the sweep pins the law's parameters down; a run trained at
the planned size also carries its own run-to-run noise (a seed repeat moves a loss by up to 1%),
and a law extrapolated ten times beyond its largest run errs by more than it does inside its
data. The rule is not tuned to the demo's runs: it is the one
:meth:`scalinglab.procedures.ProcedureFit.interval` already uses for ``fit_procedure``, taken as is:

    log L ~ Normal(log L̂, (scale · σ)²),  σ² = σ_params² + s² + (k · ln x)²

- σ_params: the standard deviation of the log prediction over the fit's bootstrap refits;
- s: the run-to-run scatter, 1.4826 · MAD of the fit's log residuals on the sweep's runs;
- k · ln x: the extrapolation term, x the target's compute over the largest fitted run's and k
  the error growth per e-fold that an inner backtest of the same recipe measures inside the
  sweep's runs (fits on C ≤ C_max/2, /4, /8 predicting the runs above);
- scale: the registry's calibration of that recipe (``plain`` for the Chinchilla form); the
  Kaplan fallback fitted on every run is no registered recipe, so it gets 1 (uncalibrated).

Nothing here reads the planned runs' losses.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scalinglab.fitting import Fit
    from scalinglab.procedures import ProcedureFit
    from scalinglab.runs import Runs

__all__ = ["RECIPE_FOR_LAW", "predictive_fit"]

# The registered recipe that fits a law the way scalinglab.fit does by default (Huber δ=1e-3 on
# log loss, every run, the law's own bounds); its interval_scale calibrates the demo's intervals.
RECIPE_FOR_LAW = {"chinchilla": "plain"}


def predictive_fit(fit: Fit, runs: Runs, *, n_jobs: int | None = None) -> ProcedureFit:
    """``fit`` wrapped with the uncertainty model of a procedure fit (see the module notes).

    Parameters
    ----------
    fit
        The demo's fit (with its bootstrap), made by ``scalinglab.fit`` on ``runs``.
    runs
        The runs it was fitted on: the scatter and the inner backtest read them only.
    n_jobs
        Workers of the inner backtest's fits.

    Returns
    -------
    ProcedureFit
        One member, ``fit`` itself; its :meth:`~scalinglab.procedures.ProcedureFit.interval`
        gives the demo's prediction intervals.
    """
    from scalinglab.procedures import BacktestError, ProcedureFit, get_procedure
    from scalinglab.procedures.choice import robust_scatter
    from scalinglab.procedures.inner import inner_backtest, runs_inputs

    registered = RECIPE_FOR_LAW.get(fit.law)
    if registered is not None:
        recipe = get_procedure(registered)
    else:
        recipe = dataclasses.replace(
            get_procedure("plain"),
            name=f"plain-{fit.law}",
            summary=f"the plain recipe with the {fit.law} law (not calibrated)",
            law=fit.law,
            interval_scale=1.0,
        )
    scatter = robust_scatter(fit.log_predict(**runs_inputs(runs)) - np.log(runs.column("loss")))
    reasons: list[str] = []
    try:
        inner = inner_backtest([recipe], runs, n_jobs=n_jobs)
        growth = inner.growth(recipe.name, scatter)
        inner_errors, cuts = dict(inner.errors), inner.cuts_flops
    except BacktestError as exc:
        growth, inner_errors, cuts = float("nan"), {}, ()
        reasons.append(f"no backtest inside the runs was possible ({exc}): extrapolation unknown")
    return ProcedureFit(
        procedure=recipe.name,
        chosen=recipe.name,
        why="the demo's chosen law with the procedures' uncertainty model",
        fits=(fit,),
        weights=(1.0,),
        max_fitted_flops=float(runs.column("flops").max()),
        n_runs=len(runs),
        scatter=scatter,
        growth=growth,
        inner_errors=inner_errors,
        inner_cuts_flops=cuts,
        reliable=not reasons,
        reasons=tuple(reasons),
        planner=None,
        interval_scale=recipe.interval_scale,
    )
