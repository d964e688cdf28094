"""Spend a budget (:func:`allocate`), reach a loss at least compute (:func:`least_compute`), and
the compute-optimal frontier over budgets (:func:`frontier`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalinglab.fitting import Fit
from scalinglab.plan.assemble import assemble_allocation, binding_caps, repetition_note
from scalinglab.plan.limits import (
    FORWARD_SHARE,
    Limits,
    Options,
    check_options,
    check_positive,
    resolve_limits,
)
from scalinglab.plan.results import Allocation, PlanError
from scalinglab.plan.solvers import Solution, budget_optimum, least_flops, tokens_for_loss
from scalinglab.plan.surface import Surface, load_surface

__all__ = ["allocate", "frontier", "least_compute"]


def allocate(
    fit: Fit | str | Path,
    flops: float,
    *,
    max_params: float | None = None,
    max_unique_tokens: float | None = None,
    inference_tokens: float | None = None,
    gpu: str = "h100-sxm",
    mfu: float = 0.4,
    count: int = 1,
    price_per_gpu_hour: float | None = None,
    pue: float = 1.0,
    level: float = 0.9,
    shape: Mapping[str, Any] | None = None,
) -> Allocation:
    """Spend a training budget: the N and D that minimise the fitted loss, within limits.

    Parameters
    ----------
    fit
        A :class:`~scalinglab.fitting.Fit` of a law of params and tokens, or the path of a fit.json.
    flops
        Training budget in FLOP (convert other units with
        :func:`scalinglab.units.flops_from_budget`).
    max_params
        Parameter cap (memory or serving). When it binds the plan trains the capped model on
        more tokens; ``loss_penalty`` says what the cap costs.
    max_unique_tokens
        Unique tokens available. A data-constrained fit plans repeated epochs; any other law
        holds D to one epoch and says so.
    inference_tokens
        Expected tokens served over the model's life. The plan then follows Sardana & Frankle
        (2023): the loss of the compute-optimal model for ``flops`` (within the caps), reached
        at the least training plus inference FLOPs, 6·N·D + 2·N·T; a smaller model trained on
        more tokens, so the run's ``flops`` exceed the budget while ``total_flops`` fall.
    gpu, mfu, count, price_per_gpu_hour, pue
        How :func:`scalinglab.units.compute_cost` expresses the run's FLOPs.
    level
        Level of the bootstrap intervals (when the fit has ``bootstrap_params``).
    shape
        Count FLOPs per operation for real transformer shapes instead of 6·N·D: options of
        ``scalinglab.train.shapes.shape_for_params`` (``vocab_size``, ``context_length``, ...).
        The plan then reports the nearest real shape and its N, D and loss.

    Returns
    -------
    Allocation

    Raises
    ------
    PlanError
        A non-positive budget or limit, or a fit whose law does not model both N and D.

    Examples
    --------
    Besiroglu et al.'s (2024) refit of Chinchilla, at Chinchilla's budget of 5.76·10^23 FLOP:

    >>> from scalinglab.fitting import Fit
    >>> fit = Fit.from_params("chinchilla", dict(E=1.8172, A=482.01, B=2085.43,
    ...                                         alpha=0.3478, beta=0.3658))
    >>> plan = allocate(fit, 5.76e23)
    >>> f"{plan.params:.3g} {plan.tokens:.3g} {plan.tokens_per_param:.1f}"
    '7.22e+10 1.33e+12 18.4'
    """
    budget = check_positive(flops, "flops")
    assert budget is not None
    opts = check_options(
        max_params,
        max_unique_tokens,
        inference_tokens,
        gpu,
        mfu,
        count,
        price_per_gpu_hour,
        pue,
        level,
        shape,
    )
    surf = load_surface(fit)
    point = np.array([0])
    boots = np.arange(1, len(surf.rows))
    notes: list[str] = []

    def solve(limits: Limits) -> Solution:
        best = budget_optimum(surf, point, np.array([budget]), limits)
        if not opts.inference_tokens:
            return best
        return least_flops(surf, point, best.loss, limits, opts.inference_tokens)

    limits, basis_notes = resolve_limits(surf, opts, solve)
    notes += basis_notes
    constrained = limits.any_cap or bool(opts.inference_tokens)

    best = budget_optimum(surf, point, np.array([budget]), limits)
    unconstrained = (
        budget_optimum(surf, point, np.array([budget]), Limits()) if constrained else None
    )
    bindings = binding_caps(opts, best, unconstrained)
    if unconstrained is not None and "max_params" in bindings:
        notes.append(
            f"the parameter cap binds: {opts.max_params:.3g} instead of the optimal "
            f"{unconstrained.params[0]:.3g}, trained on more tokens"
        )
    if best.flops[0] < budget * (1 - 1e-6):
        notes.append(
            f"the limits cannot absorb the budget: the plan spends {best.flops[0]:.3g} of "
            f"{budget:.3g} FLOP"
        )

    method = "closed-form" if surf.chinchilla and limits.counted is None else "numerical"
    params, tokens, flops_spent = float(best.params[0]), float(best.tokens[0]), float(best.flops[0])
    boot_params = boot_tokens = boot_flops = None
    if opts.inference_tokens:
        target = best.loss
        inf = least_flops(surf, point, target, limits, opts.inference_tokens)
        if not np.isfinite(inf.flops[0]):
            raise PlanError("no inference-aware plan reaches the budget's optimal loss")
        bindings.append("inference")
        method = "numerical"
        params, tokens, flops_spent = (
            float(inf.params[0]),
            float(inf.tokens[0]),
            float(inf.flops[0]),
        )
        saved = _inference_saving(best, inf, limits, opts.inference_tokens)
        notes.append(
            "inference-aware (Sardana & Frankle 2023): the loss of the compute-optimal model for "
            f"this budget, {float(target[0]):.4g}, at {saved:.1%} less training + inference "
            f"compute over {opts.inference_tokens:.3g} inference tokens; training takes "
            f"{flops_spent / budget:.2f}× the budget"
        )
        if surf.n_boot:
            boot_best = budget_optimum(surf, boots, np.full(len(boots), budget), limits)
            boot = least_flops(surf, boots, boot_best.loss, limits, opts.inference_tokens)
            boot_params, boot_tokens, boot_flops = boot.params, boot.tokens, boot.flops
    elif surf.n_boot:
        boot = budget_optimum(surf, boots, np.full(len(boots), budget), limits)
        boot_params, boot_tokens, boot_flops = boot.params, boot.tokens, boot.flops

    real_shape = None
    if limits.counted is not None:
        real_shape, params, per_token = limits.counted.shape(params)
        if opts.inference_tokens:
            tokens = float(
                tokens_for_loss(surf, point, np.array([[params]]), best.loss, limits)[0, 0]
            )
        else:
            tokens = budget / per_token
            if opts.max_unique_tokens is not None and not surf.repeats:
                tokens = min(tokens, opts.max_unique_tokens)
        flops_spent = per_token * tokens
        if opts.max_params is not None and params > opts.max_params:
            notes.append(
                f"the nearest real shape has {params:.4g} parameters, above the cap of "
                f"{opts.max_params:.4g}"
            )
    notes += repetition_note(surf, opts, tokens)
    return assemble_allocation(
        surf,
        opts,
        budget_flops=budget,
        params=params,
        tokens=tokens,
        flops=flops_spent,
        limits=limits,
        bindings=bindings,
        notes=notes,
        boot_params=boot_params,
        boot_tokens=boot_tokens,
        boot_flops=boot_flops,
        unconstrained=unconstrained,
        shape=real_shape,
        method=method,
    )


def _inference_saving(
    best: Solution, inference: Solution, limits: Limits, inference_tokens: float
) -> float:
    """Fraction of training + inference FLOPs saved against the compute-optimal model."""

    def total(sol: Solution) -> float:
        per_token = float(limits.flops_per_token(sol.params[:1])[0])
        return float(sol.flops[0]) + FORWARD_SHARE * per_token * inference_tokens

    return 1.0 - total(inference) / total(best)


def least_compute(
    fit: Fit | str | Path,
    target_loss: float,
    *,
    max_params: float | None = None,
    max_unique_tokens: float | None = None,
    inference_tokens: float | None = None,
    gpu: str = "h100-sxm",
    mfu: float = 0.4,
    count: int = 1,
    price_per_gpu_hour: float | None = None,
    pue: float = 1.0,
    level: float = 0.9,
    shape: Mapping[str, Any] | None = None,
) -> Allocation:
    """The least training compute that reaches ``target_loss``, and the run that does it.

    Solved directly as min over N of FLOPs(N)·D_ℓ(N) (closed form for an unconstrained
    Chinchilla fit). With ``inference_tokens`` the objective adds the inference FLOPs, which
    is Sardana & Frankle's (2023) problem exactly. Options as in :func:`allocate`; the
    returned allocation's ``budget_flops`` and ``flops`` are the least compute found, and
    ``flops_interval`` spans what the bootstrap resamples would need.

    Raises
    ------
    PlanError
        ``"unreachable: ..."`` when the target is at or below the fitted irreducible loss E,
        inside E's confidence interval, or below what the limits allow at any compute.
    """
    target = check_positive(target_loss, "target_loss")
    assert target is not None
    opts = check_options(
        max_params,
        max_unique_tokens,
        inference_tokens,
        gpu,
        mfu,
        count,
        price_per_gpu_hour,
        pue,
        level,
        shape,
    )
    surf = load_surface(fit)
    floor = surf.irreducible()
    if "E" in surf.fit.params and target <= floor:
        raise PlanError(
            f"unreachable: target loss {target:.4g} is at or below the fitted irreducible loss "
            f"E = {floor:.4g}; no compute reaches it",
            field="target_loss",
        )
    ci = getattr(surf.fit, "ci", None) or {}
    if "E" in ci:
        e_low, e_high = (float(v) for v in ci["E"])
        if target <= e_high:
            pct = f"{float(getattr(surf.fit, 'ci_level', 0.95)):.0%}"
            raise PlanError(
                f"unreachable: target loss {target:.4g} lies inside the {pct} interval of the "
                f"irreducible loss E [{e_low:.4g}, {e_high:.4g}]; the fit cannot promise it at "
                "any compute",
                field="target_loss",
            )
    point = np.array([0])
    notes: list[str] = []
    t_inf = opts.inference_tokens or 0.0
    limits, basis_notes = resolve_limits(
        surf, opts, lambda limits: least_flops(surf, point, np.array([target]), limits, t_inf)
    )
    notes += basis_notes
    best = least_flops(surf, point, np.array([target]), limits, t_inf)
    if not np.isfinite(best.flops[0]):
        raise PlanError(_unreachable_reason(surf, opts, target), field="target_loss")
    constrained = limits.any_cap or bool(t_inf)
    unconstrained = least_flops(surf, point, np.array([target]), Limits()) if constrained else None
    bindings = binding_caps(opts, best, unconstrained)
    if unconstrained is not None and "max_params" in bindings:
        notes.append(
            f"the parameter cap binds: {opts.max_params:.3g} instead of "
            f"{unconstrained.params[0]:.3g}; reaching the target takes "
            f"{best.flops[0] / unconstrained.flops[0]:.2f}× the unconstrained compute"
        )
    if t_inf:
        bindings.append("inference")
    boot_params = boot_tokens = boot_flops = None
    if surf.n_boot:
        boots = np.arange(1, len(surf.rows))
        boot = least_flops(surf, boots, np.full(len(boots), target), limits, t_inf)
        boot_params, boot_tokens, boot_flops = boot.params, boot.tokens, boot.flops
    params, tokens, flops_spent = float(best.params[0]), float(best.tokens[0]), float(best.flops[0])
    real_shape = None
    if limits.counted is not None:
        real_shape, params, per_token = limits.counted.shape(params)
        tokens = float(
            tokens_for_loss(surf, point, np.array([[params]]), np.array([target]), limits)[0, 0]
        )
        if not math.isfinite(tokens):
            raise PlanError(
                f"unreachable: the nearest real shape ({params:.4g} parameters) cannot reach "
                f"loss {target:.4g} within the limits",
                field="target_loss",
            )
        flops_spent = per_token * tokens
    notes += repetition_note(surf, opts, tokens)
    method = (
        "closed-form"
        if surf.chinchilla and not constrained and limits.counted is None
        else "numerical"
    )
    return assemble_allocation(
        surf,
        opts,
        budget_flops=flops_spent,
        params=params,
        tokens=tokens,
        flops=flops_spent,
        limits=limits,
        bindings=bindings,
        notes=notes,
        boot_params=boot_params,
        boot_tokens=boot_tokens,
        boot_flops=boot_flops,
        unconstrained=unconstrained,
        shape=real_shape,
        method=method,
    )


def _unreachable_reason(surf: Surface, opts: Options, target: float) -> str:
    parts = []
    if opts.max_params is not None:
        parts.append(f"max_params = {opts.max_params:.3g}")
    if opts.max_unique_tokens is not None and not surf.repeats:
        parts.append(f"one epoch of {opts.max_unique_tokens:.3g} unique tokens")
    elif opts.max_unique_tokens is not None:
        parts.append(f"{opts.max_unique_tokens:.3g} unique tokens, repeated")
    within = f" within {' and '.join(parts)}" if parts else ""
    return (
        f"unreachable: no compute reaches loss {target:.4g}{within} under this "
        f"{surf.law.name!r} fit"
    )


def frontier(
    fit: Fit | str | Path,
    flops: ArrayLike,
    **options: Any,
) -> pd.DataFrame:
    """:func:`allocate` at each budget in ``flops``: one row per budget, columns of
    :meth:`Allocation.to_dict` (``warnings`` joined with ``"; "``, ``shape`` as text).

    Parameters
    ----------
    fit
        A Fit or a fit.json path.
    flops
        Budgets in FLOP, e.g. ``np.geomspace(1e19, 1e25, 13)``.
    **options
        Keyword options of :func:`allocate`.
    """
    budgets = np.atleast_1d(np.asarray(flops, dtype=float))
    if budgets.ndim != 1 or budgets.size == 0:
        raise PlanError("flops must be a non-empty 1-D sequence of budgets", field="flops")
    surf_fit = load_surface(fit).fit  # load a path once, check the law once
    rows = []
    for budget in budgets:
        row = allocate(surf_fit, float(budget), **options).to_dict()
        row["warnings"] = "; ".join(row["warnings"])
        row["shape"] = None if row["shape"] is None else str(row["shape"])
        rows.append(row)
    return pd.DataFrame(rows)
