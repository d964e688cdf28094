"""Single recipes: which runs a procedure trusts, how much each weighs, and the fit it makes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from scalinglab.fitting import Fit, fit
from scalinglab.procedures.curves import CURVE_WEIGHT
from scalinglab.procedures.errors import ProcedureError
from scalinglab.procedures.registry import Procedure, get_procedure
from scalinglab.runs import Runs

__all__ = [
    "fit_recipe",
    "frontier_gap",
    "near_frontier_mask",
    "run_weights",
    "trust_mask",
    "trusted_runs",
]


def frontier_gap(flops: np.ndarray, loss: np.ndarray, window: float = 2**0.25) -> np.ndarray:
    """Each run's loss above the lowest loss among the runs whose compute lies within a factor
    ``window`` of its own, as a fraction (0 for the best run of its neighbourhood).

    On an IsoFLOP grid (budgets 2× apart) each budget is its own neighbourhood; on scattered
    compute the neighbourhood slides. A run alone in its neighbourhood has a gap of 0.
    """
    flops = np.asarray(flops, dtype=float)
    loss = np.asarray(loss, dtype=float)
    n = flops.shape[0]
    if n == 0:
        return np.zeros(0)
    order = np.argsort(flops, kind="stable")
    logc = np.log(flops[order])
    sorted_loss = loss[order]
    half = math.log(window)
    lo = np.searchsorted(logc, logc - half, side="left")
    hi = np.searchsorted(logc, logc + half, side="right")  # exclusive
    # Range minimum by a sparse table: O(n log n), and exact for any window (a sliding minimum
    # over a value window, which scipy.ndimage's index-window filters do not offer).
    table = [sorted_loss]
    span = 1
    while 2 * span <= n:
        prev = table[-1]
        table.append(np.minimum(prev[:-span], prev[span:]))
        span *= 2
    length = hi - lo
    level = np.floor(np.log2(np.maximum(length, 1))).astype(int)
    ref = np.empty(n)
    for k in np.unique(level):
        rows = np.flatnonzero(level == k)
        t = table[k]
        a = lo[rows]
        b = hi[rows] - (1 << k)
        ref[rows] = np.minimum(t[a], t[b])
    gap = np.empty(n)
    gap[order] = sorted_loss / ref - 1.0
    return gap


def near_frontier_mask(
    flops: np.ndarray, loss: np.ndarray, tolerance: float, window: float = 2**0.25
) -> np.ndarray:
    """Runs whose loss is within ``tolerance`` (a fraction) of the lowest loss among the runs
    whose compute lies within a factor ``window`` of theirs (see :func:`frontier_gap`)."""
    return frontier_gap(flops, loss, window) <= tolerance


def trust_mask(procedure: Procedure, runs: Runs) -> tuple[np.ndarray, list[str]]:
    """Which runs a single recipe trusts (a boolean mask) and notes on what it left out, why."""
    mask = np.ones(len(runs), dtype=bool)
    notes: list[str] = []
    flops = runs.column("flops")
    if procedure.min_flops_ratio is not None and procedure.min_flops_ratio < 1:
        floor = float(flops.max()) * procedure.min_flops_ratio
        small = flops < floor * (1 - 1e-12)
        if small.any():
            notes.append(
                f"left out {int(small.sum())} runs below {floor:.3g} FLOP "
                f"(1/{1 / procedure.min_flops_ratio:.3g} of the largest budget)"
            )
        mask &= ~small
    if procedure.near_frontier is not None:
        near = near_frontier_mask(
            flops[mask],
            runs.column("loss")[mask],
            procedure.near_frontier,
            procedure.frontier_window,
        )
        dropped = int((~near).sum())
        if dropped:
            notes.append(
                f"left out {dropped} runs more than {procedure.near_frontier:.0%} above the "
                "lowest loss at their compute"
            )
        idx = np.flatnonzero(mask)
        mask[idx[~near]] = False
    return mask, notes


def trusted_runs(procedure: Procedure, runs: Runs) -> tuple[Runs, list[str]]:
    """The runs a single recipe fits on, and notes saying what was left out and why."""
    mask, notes = trust_mask(procedure, runs)
    if mask.all():
        return runs, notes
    return runs.subset(mask, "; ".join(notes) if notes else None), notes


def run_weights(procedure: Procedure, runs: Runs) -> np.ndarray | None:
    """Per-row weights of a single recipe (None: every row weighs 1): the compute weight, times
    the frontier weight, times the curve weight of
    :func:`~scalinglab.procedures.curves.curve_points` where there is one."""
    weights = None
    flops = runs.column("flops")
    if procedure.flops_weight_power != 0:
        weights = (flops / flops.max()) ** procedure.flops_weight_power
    if procedure.frontier_weight_scale is not None:
        gap = frontier_gap(flops, runs.column("loss"), procedure.frontier_window)
        # Cauchy-shaped: a run at one scale above the frontier counts half, at three scales a
        # tenth; the far runs keep a voice, so N and D stay separable (the hard cut loses them).
        frontier = 1.0 / (1.0 + (gap / procedure.frontier_weight_scale) ** 2)
        weights = frontier if weights is None else weights * frontier
    if CURVE_WEIGHT in runs.frame:
        curve = runs.frame[CURVE_WEIGHT].to_numpy(float)
        weights = curve if weights is None else weights * curve
    return weights


def fit_recipe(
    procedure: Procedure | str,
    runs: Runs,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    target: Mapping[str, float] | None = None,
    refine: int = 64,
    n_jobs: int | None = None,
) -> Fit:
    """Fit a single recipe to ``runs``: trust filter, weights, bounds, law, robust loss.

    Parameters
    ----------
    procedure:
        A ``single`` :class:`Procedure` or its name.
    runs:
        The runs to fit (all of them are candidates; the recipe decides which it trusts).
    bootstrap, seed, target, refine, n_jobs:
        Passed to :func:`scalinglab.fitting.fit`.

    Returns
    -------
    Fit
        With ``diagnostics["procedure"]`` naming the recipe and ``diagnostics["trusted_runs"]``
        how many runs it fitted on.
    """
    proc = get_procedure(procedure) if isinstance(procedure, str) else procedure
    if proc.kind != "single":
        raise ProcedureError(
            f"procedure {proc.name!r} is an {proc.kind}; fit it with scalinglab.fit_procedure",
            field="procedure",
        )
    trusted, notes = trusted_runs(proc, runs)
    result = fit(
        proc.law,
        trusted,
        loss=proc.loss,
        huber_delta=proc.huber_delta,
        law_options=dict(proc.law_options) or None,
        weights=run_weights(proc, trusted),
        bounds=None if proc.bounds is None else dict(proc.bounds),
        bootstrap=bootstrap,
        seed=seed,
        target=target,
        refine=refine,
        n_jobs=n_jobs,
    )
    diagnostics = {
        **result.diagnostics,
        "procedure": proc.name,
        "trusted_runs": len(trusted),
        "given_runs": len(runs),
        "trust_notes": notes,
    }
    return replace(result, diagnostics=diagnostics)
