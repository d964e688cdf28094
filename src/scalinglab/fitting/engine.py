"""The entry point :func:`fit`: check the options, hold out, build the objective, search from many
starts, check the optimum, bootstrap, and assemble the :class:`~scalinglab.fitting.Fit`.

Each step is a function of its own below; :func:`fit` reads as their sequence.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalinglab.fitting import uncertainty
from scalinglab.fitting.errors import FitError, FitWarning
from scalinglab.fitting.objective import Objective, as_law, make_objective
from scalinglab.fitting.optimiser import solve, start_grid
from scalinglab.fitting.result import Domain, Fit
from scalinglab.fitting.verdicts import optima, optimum_notes, verdict
from scalinglab.laws import BaseLaw
from scalinglab.runs import Runs, as_runs

__all__ = ["fit", "refit"]


@dataclass(frozen=True)
class _Bootstrap:
    """What the bootstrap step gives the Fit: natural rows, intervals, failures, notes."""

    natural: np.ndarray | None = None
    ci: dict[str, tuple[float, float]] | None = None
    failed: int = 0
    notes: tuple[str, ...] = ()


def _check_options(bootstrap: Any, ci_level: Any, seed: Any) -> None:
    if isinstance(bootstrap, bool) or not (
        isinstance(bootstrap, int | np.integer) and bootstrap >= 0
    ):
        raise FitError(
            f"bootstrap must be a whole number >= 0, got {bootstrap!r}", field="bootstrap"
        )
    # numpy would take a string seed only to fail deep in the bootstrap with a TypeError.
    if isinstance(seed, bool) or not (
        seed is None or (isinstance(seed, int | np.integer) and seed >= 0)
    ):
        raise FitError(f"seed must be a whole number >= 0 or None, got {seed!r}", field="seed")
    if isinstance(ci_level, bool) or not isinstance(ci_level, int | float) or not 0 < ci_level < 1:
        raise FitError(f"ci_level must lie in (0, 1), got {ci_level!r}", field="ci_level")


def _check_enough_runs(law: BaseLaw, train: Runs) -> None:
    if len(train) <= law.n_params:
        raise FitError(
            f"law {law.name!r} has {law.n_params} parameters; fitting it needs more than "
            f"{law.n_params} runs, got {len(train)}",
            field="runs",
        )


def _group_notes(train: Runs) -> list[str]:
    if "group" in train.frame and train.frame["group"].nunique() > 1:
        return [
            f"the runs hold {train.frame['group'].nunique()} groups (recipes or data sets): one "
            "law was fitted to all of them; select a group to fit it alone"
        ]
    return []


def _run_bootstrap(
    law: BaseLaw,
    objective: Objective,
    train: Runs,
    z: np.ndarray,
    raw_bounds: np.ndarray,
    k: int,
    *,
    by: str,
    seed: int,
    ci_level: float,
    max_iter: int,
    n_jobs: int | None,
    progress: Callable[[str, int, int], None] | None,
) -> _Bootstrap:
    """Resample, refit, and turn the resamples into intervals and warnings (nothing if k = 0)."""
    if not k:
        return _Bootstrap()
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress("bootstrap", min(done[0], k), k)

    raw, failed = uncertainty.bootstrap(
        objective,
        train,
        z,
        raw_bounds,
        k,
        by=by,
        seed=seed,
        max_iter=max_iter,
        n_jobs=n_jobs,
        progress=tick,
    )
    natural = law.natural_array(raw)
    ci = uncertainty.percentile_ci(law, natural, ci_level)
    notes = uncertainty.bootstrap_notes(
        law, train, ci, by=by, k=k, failed=failed, max_iter=max_iter, level=ci_level
    )
    return _Bootstrap(natural=natural, ci=ci, failed=failed, notes=tuple(notes))


def fit(
    law: str | BaseLaw,
    runs: Runs | pd.DataFrame | str | Path,
    *,
    loss: str = "huber",
    huber_delta: float = 1e-3,
    asymmetry: float = 0.9,
    bootstrap: int = 0,
    bootstrap_by: str = "run",
    seed: int = 0,
    holdout_above: float | None = None,
    holdout_top: float | None = None,
    ci_level: float = 0.95,
    law_options: Mapping[str, Any] | None = None,
    weights: ArrayLike | str | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    starts: Mapping[str, Sequence[float]] | ArrayLike | None = None,
    refine: int = 64,
    polish: int | None = None,
    max_iter: int = 400,
    target: Mapping[str, float] | None = None,
    n_jobs: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Fit:
    """Fit ``law`` to ``runs`` by a robust loss of log residuals, from many starts.

    Parameters
    ----------
    law:
        A registry name (``"chinchilla"``, ``"kaplan-nd"``, ``"power"``, ``"data-constrained"``,
        ``"broken-power"``) or a law object from :func:`scalinglab.get_law`.
    runs:
        A :class:`~scalinglab.runs.Runs`, a DataFrame or a path (read by ``load_runs``).
    loss:
        ``"huber"`` (default, δ = ``huber_delta``), ``"mse"`` or ``"asymmetric"`` (a lower
        envelope; ``asymmetry`` τ weighs residuals above the data, 1 − τ those below).
    huber_delta:
        Huber's δ on log residuals; 1e-3 as in Hoffmann et al. (2022) and Besiroglu et al. (2024).
    bootstrap:
        Number of bootstrap resamples (0: none). CIs are percentile intervals at ``ci_level``.
    bootstrap_by:
        ``"run"`` resamples whole runs (rows sharing a ``run_id`` stay together) or ``"group"``.
    seed:
        Seeds the resampling (and the subsample used to screen starts on very large tables).
    holdout_above, holdout_top:
        Fit only on runs with flops ≤ ``holdout_above`` (or all but the top ``holdout_top``
        fraction by flops) and report each held-out run's relative error.
    law_options:
        Options for a law given by name, e.g. ``{"x": "params"}`` for ``"power"``.
    weights:
        A weight per run, or the name of a column holding them.
    bounds:
        Natural bounds overriding the law's, e.g. ``{"alpha": (0.1, 1.0)}``.
    starts:
        Starting points in natural units: a mapping name → values (their grid is used) or an
        array ``[K, P]``. Default: the law's grid anchored on the data.
    refine:
        How many of the best-scoring starts are optimised to convergence (all together).
    polish:
        How many of the best distinct solutions to polish with L-BFGS-B (analytic gradient,
        gtol 1e-12, ftol 0). Default: one, only if the batched optimiser did not converge.
    max_iter:
        Iterations per start of the batched optimiser.
    target:
        Inputs where the prediction matters (``{"params": 7e10, "tokens": 1.4e12}``):
        near-equal optima that disagree there trigger the identifiability warning.
    n_jobs:
        Threads for the batched optimiser (default: every core).
    progress:
        Called as ``progress(stage, done, total)`` during the bootstrap.

    Returns
    -------
    Fit

    Raises
    ------
    FitError
        Unknown law or loss, missing columns, too few runs, bad holdout or bootstrap options
        (its ``field`` names the option or column).

    Warns
    -----
    FitWarning
        Each of the fit's warnings (a parameter on a bound, not converged, not identifiable,
        weakly identified).
    """
    t_start = time.perf_counter()
    law_obj = as_law(law, law_options)
    all_runs = as_runs(runs)
    _check_options(bootstrap, ci_level, seed)
    train, test, threshold, train_mask = uncertainty.holdout_split(
        all_runs, holdout_above, holdout_top
    )
    _check_enough_runs(law_obj, train)
    objective = make_objective(
        law_obj,
        train,
        loss=loss,
        huber_delta=huber_delta,
        asymmetry=asymmetry,
        weights=uncertainty.weights_for(all_runs, train_mask, weights),
    )
    raw_bounds = law_obj.raw_bounds(bounds)

    solved = solve(
        objective,
        start_grid(law_obj, objective, starts),
        raw_bounds,
        refine=refine,
        polish=polish,
        max_iter=max_iter,
        n_jobs=n_jobs,
        seed=seed,
    )
    z = solved.raw
    params = law_obj.from_raw(z)
    f_best, grad_rel, on_bound, notes = optimum_notes(law_obj, objective, z, raw_bounds)
    found_optima, ident = optima(law_obj, solved, target)
    notes += ident + _group_notes(train)

    boot = _run_bootstrap(
        law_obj,
        objective,
        train,
        z,
        raw_bounds,
        int(bootstrap),
        by=bootstrap_by,
        seed=seed,
        ci_level=ci_level,
        max_iter=max_iter,
        n_jobs=n_jobs,
        progress=progress,
    )
    notes += boot.notes

    holdout = None
    if test is not None and threshold is not None:
        holdout = uncertainty.holdout_report(
            law_obj, params, test, threshold, len(train), boot.natural, ci_level
        )

    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=2)

    diagnostics = {
        **solved.info,
        "relative_gradient": grad_rel,
        "n_points": len(train),
        "bootstrap": int(bootstrap),
        "bootstrap_by": bootstrap_by if bootstrap else None,
        "bootstrap_not_converged": boot.failed,
        "seed": seed,
        "runs_source": all_runs.source,
        "runs_notes": list(train.notes),
        "seconds_total": time.perf_counter() - t_start,
    }
    if loss == "asymmetric":
        diagnostics["asymmetry"] = asymmetry
    reasons = verdict(law_obj, params, on_bound, ident)
    return Fit(
        law=law_obj.name,
        law_options=law_obj.options,
        params=params,
        objective=f_best,
        loss=loss,
        huber_delta=float(huber_delta),
        n_runs=int(train.cluster_ids("run").max()) + 1,
        param_basis=train.param_basis,
        domain=Domain.of(train),
        ci=boot.ci,
        ci_level=ci_level,
        bootstrap_params=boot.natural,
        optima=found_optima,
        warnings=tuple(notes),
        holdout=holdout,
        diagnostics=diagnostics,
        reliable=not reasons,
        reasons=tuple(reasons),
    )


def refit(previous: Fit, runs: Runs | pd.DataFrame | str | Path, **kwargs: Any) -> Fit:
    """Fit the same law with the same options as ``previous`` to other runs (kwargs override)."""
    options = {"loss": previous.loss, "huber_delta": previous.huber_delta, **kwargs}
    return fit(previous.law, runs, law_options=dict(previous.law_options), **options)
