"""The compute-equivalent multiplier of one recipe over another (:func:`compare`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from scalinglab.fitting import Fit
from scalinglab.plan.assemble import decades_outside, interval
from scalinglab.plan.limits import check_level
from scalinglab.plan.results import Comparison, PlanError
from scalinglab.plan.solvers import least_flops_any, optimal_loss
from scalinglab.plan.surface import load_surface

__all__ = ["compare"]


def compare(
    fit_a: Fit | str | Path,
    fit_b: Fit | str | Path,
    flops: ArrayLike,
    *,
    level: float = 0.9,
) -> Comparison:
    """Compute-equivalent multiplier of recipe B over recipe A: k(C) with L*_B(C/k) = L*_A(C).

    L*_X(C) is the compute-optimal loss of fit X at C (for a law of compute alone, the law
    itself). k > 1: B reaches A's loss with k times less compute, so B's change of
    architecture, optimiser or data is worth a k-fold compute gain at C. k = 0 when B cannot
    reach A's loss at any compute.

    Parameters
    ----------
    fit_a, fit_b
        Fits (or fit.json paths) of laws of N and D, or of C alone.
    flops
        Budgets C in FLOP at which to evaluate k.
    level
        Interval level. With bootstraps on both fits, resample i of A is paired with
        resample i of B (up to the smaller count) and k is recomputed per pair.

    Returns
    -------
    Comparison
    """
    level = check_level(level)
    budgets = np.atleast_1d(np.asarray(flops, dtype=float))
    if budgets.ndim != 1 or budgets.size == 0 or not np.all(np.isfinite(budgets) & (budgets > 0)):
        raise PlanError("flops must be finite budgets > 0", field="flops")
    surf_a = load_surface(fit_a, need="any")
    surf_b = load_surface(fit_b, need="any")
    pairs = min(surf_a.n_boot, surf_b.n_boot)
    ks_a = np.arange(pairs + 1)
    ks_b = np.arange(pairs + 1)
    multiplier = np.empty(len(budgets))
    low = np.full(len(budgets), np.nan)
    high = np.full(len(budgets), np.nan)
    loss_a = np.empty(len(budgets))
    loss_b = np.empty(len(budgets))
    flops_b = np.empty(len(budgets))
    for j, c in enumerate(budgets):
        la = optimal_loss(surf_a, ks_a, np.full(len(ks_a), c))
        cb = least_flops_any(surf_b, ks_b, la)
        with np.errstate(divide="ignore"):
            k = np.where(np.isfinite(cb), c / cb, 0.0)
        multiplier[j] = k[0]
        loss_a[j] = la[0]
        loss_b[j] = optimal_loss(surf_b, ks_b[:1], np.array([c]))[0]
        flops_b[j] = cb[0]
        if pairs:
            low[j], high[j] = interval(k[1:], level)  # type: ignore[misc]
    notes: list[str] = []
    for name, surf in (("A", surf_a), ("B", surf_b)):
        domain = getattr(surf.fit, "domain", None)
        if domain is None:
            notes.append(f"fit {name}: domain unknown; cannot say whether C extrapolates")
            continue
        outside = [c for c in budgets if decades_outside(float(c), domain.flops) > 0]
        if outside:
            worst = max(decades_outside(float(c), domain.flops) for c in outside)
            notes.append(
                f"extrapolation: {len(outside)} of the budgets lie outside fit {name}'s compute "
                f"range [{domain.flops[0]:.3g}, {domain.flops[1]:.3g}] (by up to {worst:.2f} "
                "decades)"
            )
    if np.any(multiplier == 0):
        notes.append("B cannot reach A's loss at some budgets (multiplier 0)")
    if surf_a.n_boot and surf_b.n_boot and surf_a.n_boot != surf_b.n_boot:
        notes.append(f"paired the first {pairs} bootstrap resamples of each fit")
    return Comparison(
        flops=budgets,
        multiplier=multiplier,
        interval=(low, high) if pairs else None,
        level=level if pairs else None,
        loss_a=loss_a,
        loss_b=loss_b,
        flops_b=flops_b,
        law_a=surf_a.law.name,
        law_b=surf_b.law.name,
        warnings=tuple(notes),
    )
