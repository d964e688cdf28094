"""From a solved (N, D) to an :class:`~scalinglab.plan.results.Allocation`: the loss and its
bootstrap interval there, the cost in every unit, and the caveats (extrapolation, repetition)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from scalinglab.counting import TransformerShape, flops_per_token
from scalinglab.fitting import Fit
from scalinglab.fitting.allocation import allocation_exponent, allocation_reasons
from scalinglab.plan.limits import FORWARD_SHARE, Limits, Options
from scalinglab.plan.results import BINDINGS, Allocation, PlanError
from scalinglab.plan.solvers import Solution
from scalinglab.plan.surface import Surface
from scalinglab.units import compute_cost

__all__ = [
    "assemble_allocation",
    "binding_caps",
    "decades_outside",
    "interval",
    "repetition_note",
]


def interval(values: np.ndarray, level: float) -> tuple[float, float] | None:
    """Percentile interval of ``values`` at ``level`` (+inf stays +inf); None if empty."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return None
    q = np.array([(1 - level) / 2, (1 + level) / 2])
    finite = np.where(np.isfinite(values), values, np.finfo(float).max)
    low, high = np.quantile(finite, q)
    fix = np.finfo(float).max / 2
    return (
        float(low) if low < fix else math.inf,
        float(high) if high < fix else math.inf,
    )


def decades_outside(value: float, bounds: tuple[float, float] | None) -> float:
    if bounds is None:
        return math.nan
    lo, hi = bounds
    if value < lo:
        return math.log10(lo / value)
    if value > hi:
        return math.log10(value / hi)
    return 0.0


_DOMAIN_LABELS = {
    "params": "parameters N",
    "tokens": "tokens D",
    "tokens_per_param": "tokens per parameter D/N",
    "flops": "compute C",
}


def _extrapolation(fit: Fit, values: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """Decades outside the fit's domain per quantity, and a sentence for each one outside."""
    domain = getattr(fit, "domain", None)
    if domain is None:
        return (
            {k: math.nan for k in values},
            [
                "fit domain unknown (the fit carries no range of runs, e.g. published "
                "parameters): cannot say whether this plan extrapolates"
            ],
        )
    out: dict[str, float] = {}
    notes: list[str] = []
    for key, value in values.items():
        bounds = getattr(domain, key, None)
        decades = decades_outside(value, bounds)
        out[key] = decades
        if decades > 0 and bounds is not None:
            side = "above" if value > bounds[1] else "below"
            notes.append(
                f"extrapolation: {_DOMAIN_LABELS[key]} = {value:.3g} lies {decades:.2f} "
                f"decades {side} the fit's range [{bounds[0]:.3g}, {bounds[1]:.3g}]"
            )
    return out, notes


def binding_caps(opts: Options, best: Solution, unconstrained: Solution | None) -> list[str]:
    """The caps that change a plan: ``max_params`` when the optimum without limits
    (``unconstrained``, ``None`` when no limit was given) exceeds it, ``max_unique_tokens``
    when either plan's D does."""
    if unconstrained is None:
        return []
    bindings = []
    if opts.max_params is not None and unconstrained.params[0] > opts.max_params * (1 + 1e-9):
        bindings.append("max_params")
    cap_u = opts.max_unique_tokens
    if cap_u is not None and (
        best.tokens[0] > cap_u * (1 + 1e-9) or unconstrained.tokens[0] > cap_u * (1 + 1e-9)
    ):
        bindings.append("max_unique_tokens")
    return bindings


def repetition_note(surf: Surface, opts: Options, tokens: float) -> list[str]:
    if opts.max_unique_tokens is None:
        return []
    if surf.repeats:
        epochs = tokens / min(tokens, opts.max_unique_tokens)
        if epochs <= 4:
            return []
        # Muennighoff et al. (2023) measured repeated data as nearly as good as fresh up to
        # about 4 epochs, and its value decaying beyond; their law extrapolates that decay.
        return [
            f"the plan repeats the unique tokens {epochs:.1f} times: beyond about 4 epochs "
            "Muennighoff et al. (2023) saw the value of repeated data fall fast, and the "
            "data-constrained law extrapolates that decay"
        ]
    if tokens < opts.max_unique_tokens * (1 - 1e-9):
        return []
    return [
        f"repetition beyond one epoch is not modelled by a {surf.law.name!r} fit: the plan holds "
        f"D to the {opts.max_unique_tokens:.3g} unique tokens (one epoch); fit a "
        "data-constrained law (Muennighoff et al. 2023) to plan repeated epochs"
    ]


def assemble_allocation(
    surf: Surface,
    opts: Options,
    *,
    budget_flops: float,
    params: float,
    tokens: float,
    flops: float,
    limits: Limits,
    bindings: list[str],
    notes: list[str],
    boot_params: np.ndarray | None,
    boot_tokens: np.ndarray | None,
    boot_flops: np.ndarray | None,
    unconstrained: Solution | None,
    shape: TransformerShape | None,
    method: str,
) -> Allocation:
    """Assemble an :class:`Allocation`: loss and its interval at (N, D), cost, caveats."""
    cap_u = opts.max_unique_tokens
    ks = np.arange(len(surf.rows))
    losses = surf.loss(
        ks, np.full((len(ks), 1), params), np.full((len(ks), 1), tokens), unique_cap=cap_u
    )[:, 0]
    loss = float(losses[0])
    derived = {"N": params, "D": tokens, "C": flops, "loss": loss}
    if not all(math.isfinite(v) and v > 0 for v in derived.values()):
        # Overflow or a degenerate law, not the budget's fault: say so instead of letting a NaN
        # reach compute_cost (which would blame the FLOPs) or a table.
        shown = ", ".join(f"{k} = {v:.3g}" for k, v in derived.items())
        raise PlanError(
            f"the fit gives no finite plan at {budget_flops:.3g} FLOP ({shown}); its "
            f"parameters {dict(surf.fit.params)} are outside what the law can plan with",
            field="fit",
        )
    level = opts.level if surf.n_boot else None
    loss_interval = params_interval = tokens_interval = flops_interval = None
    if surf.n_boot:
        loss_interval = interval(losses[1:], opts.level)
        if boot_params is not None:
            params_interval = interval(boot_params, opts.level)
            tokens_interval = interval(boot_tokens, opts.level)
            flops_interval = interval(boot_flops, opts.level)
            unreachable = float(np.mean(~np.isfinite(boot_flops)))
            if unreachable > 0:
                notes.append(
                    f"{unreachable:.0%} of the bootstrap resamples cannot reach this plan's "
                    "loss at any compute"
                )
    epochs = unique = None
    if cap_u is not None:
        unique = min(tokens, cap_u)
        epochs = tokens / unique
    inference = opts.inference_tokens
    if shape is not None:
        per_token = float(flops_per_token(shape).per_operation)
    else:
        per_token = float(limits.flops_per_token(np.array(params)))
    inference_flops = None if inference is None else FORWARD_SHARE * per_token * inference
    extrapolation, range_notes = _extrapolation(
        surf.fit,
        {
            "params": params,
            "tokens": tokens,
            "tokens_per_param": tokens / params,
            "flops": flops,
        },
    )
    # How sure the plan is of the split: a and its interval, flagged when too wide to tell N
    # from D (a procedure's planner passed this check already; a plain fit may not).
    a, a_interval = allocation_exponent(surf.fit, opts.level)
    split_notes = [f"allocation uncertain: {r}" for r in allocation_reasons(surf.fit)]
    cost = compute_cost(
        flops,
        gpu=opts.gpu,
        mfu=opts.mfu,
        count=opts.count,
        price_per_gpu_hour=opts.price_per_gpu_hour,
        pue=opts.pue,
    )
    return Allocation(
        budget_flops=float(budget_flops),
        flops=float(flops),
        params=float(params),
        tokens=float(tokens),
        tokens_per_param=float(tokens / params),
        loss=loss,
        loss_interval=loss_interval,
        interval_level=level,
        params_interval=params_interval,
        tokens_interval=tokens_interval,
        flops_interval=flops_interval,
        cost=cost,
        binding=",".join(b for b in BINDINGS if b in bindings) or None,
        epochs=epochs,
        unique_tokens=unique,
        inference_tokens=inference,
        inference_flops=inference_flops,
        total_flops=float(flops + (inference_flops or 0.0)),
        unconstrained_params=None if unconstrained is None else float(unconstrained.params[0]),
        unconstrained_tokens=None if unconstrained is None else float(unconstrained.tokens[0]),
        unconstrained_loss=None if unconstrained is None else float(unconstrained.loss[0]),
        extrapolation=MappingProxyType(extrapolation),
        warnings=tuple(list(surf.notes) + split_notes + notes + range_notes),
        shape=shape,
        law=surf.law.name,
        method=method,
        flops_per_token="6N" if limits.counted is None else "per-operation",
        a=a if math.isfinite(a) else None,
        a_interval=a_interval,
    )
