"""Approach 1 of Hoffmann et al. (2022): the lower envelope of loss against compute, from
training curves or from final losses, gives N_opt(C); power laws are fitted to its points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.approaches.powerlaw import power_fits_rows
from scalinglab.approaches.result import ApproachError, ApproachResult, select_group
from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.runs import Runs


def _run_labels(fr: pd.DataFrame) -> np.ndarray:
    if "run_id" in fr.columns:
        return pd.factorize(fr["run_id"])[0]
    return np.arange(len(fr))


def _envelope_points(
    fr: pd.DataFrame, labels: np.ndarray, weights: np.ndarray | None, grid_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(flops, params_opt) along the lower envelope of loss against compute."""
    runs = np.unique(labels if weights is None else labels[weights[labels] > 0])
    flops = fr["flops"].to_numpy()
    loss = fr["loss"].to_numpy()
    params = fr["params"].to_numpy()
    curves = [np.flatnonzero(labels == r) for r in runs]
    if all(len(c) == 1 for c in curves):
        # One row per run: the envelope is the set of runs no cheaper run beats.
        idx = np.array([c[0] for c in curves])
        idx = idx[np.lexsort((loss[idx], flops[idx]))]
        best = np.minimum.accumulate(loss[idx])
        front = idx[np.concatenate([[True], loss[idx][1:] < best[:-1]])]
        return flops[front], params[front]
    lo = min(flops[c].min() for c in curves)
    hi = max(flops[c].max() for c in curves)
    grid = np.geomspace(lo, hi, grid_size)
    best_loss = np.full(grid_size, np.inf)
    best_params = np.full(grid_size, np.nan)
    for c in curves:
        order = c[np.argsort(flops[c], kind="stable")]
        f, lval = flops[order], loss[order]
        inside = (grid >= f[0]) & (grid <= f[-1])
        if not inside.any():
            continue
        interp = np.exp(np.interp(np.log(grid[inside]), np.log(f), np.log(lval)))
        better = interp < best_loss[inside]
        where = np.flatnonzero(inside)[better]
        best_loss[where] = interp[better]
        best_params[where] = params[order[0]]
    ok = np.isfinite(best_params)
    return grid[ok], best_params[ok]


def envelope(
    runs: Runs | pd.DataFrame | str | Path,
    *,
    group: str | None = None,
    grid_size: int = 1500,
    bootstrap: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
) -> ApproachResult:
    """Approach 1 of Hoffmann et al. (2022): the lower envelope of loss against compute.

    With training curves (rows sharing a ``run_id``, one per checkpoint, ``flops`` counting
    the compute spent up to it), each run's loss is interpolated in log-log on ``grid_size``
    log-spaced FLOP values (1500, as Hoffmann et al.) and the lowest run at each value gives
    N_opt(C). With one row per run, the envelope is the runs that no cheaper run beats.

    Raises
    ------
    ApproachError
        Fewer than three envelope points, several groups.
    """
    table = select_group(runs, group)
    fr = table.frame
    labels = _run_labels(fr)
    c, n_opt = _envelope_points(fr, labels, None, grid_size)
    if len(np.unique(n_opt)) < 2 or len(c) < 3:
        raise ApproachError(
            f"the envelope has {len(c)} points on {len(np.unique(n_opt))} model sizes; it needs "
            "runs of at least two sizes that each lead at some compute"
        )
    boot_c = boot_n = None
    notes: list[str] = []
    if bootstrap:
        rng = np.random.default_rng(seed)
        n_runs = int(labels.max()) + 1
        slopes = []
        for _ in range(bootstrap):
            counts = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs))
            bc, bn = _envelope_points(fr, labels, counts, grid_size)
            slopes.append((bc, bn))
        # Resamples give envelopes on different FLOP values: fit each on its own points.
        size = max(len(s[0]) for s in slopes)
        boot_c_rows = np.full((bootstrap, size), np.nan)
        boot_n = np.full((bootstrap, size), np.nan)
        for i, (bc, bn) in enumerate(slopes):
            boot_c_rows[i, : len(bc)] = bc
            boot_n[i, : len(bn)] = bn
        boot_c = boot_c_rows
    fit_n, fit_d, failed = power_fits_rows(c, n_opt, boot_c, boot_n, ci_level)
    if bootstrap and failed:
        notes.append(f"{failed} of {bootstrap} resamples left an envelope of a single size")
    points = pd.DataFrame(
        {
            "flops": c,
            "params_opt": n_opt,
            "tokens_opt": c / (FLOPS_PER_PARAM_TOKEN * n_opt),
        }
    )
    return ApproachResult(
        approach="envelope",
        params_opt=fit_n,
        tokens_opt=fit_d,
        points=points,
        warnings=tuple(notes),
        bootstrap=int(bootstrap),
        ci_level=ci_level,
        details={"grid_size": grid_size, "n_sizes": len(np.unique(n_opt))},
    )
