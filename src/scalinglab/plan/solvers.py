"""The solvers: a zooming grid argmin and a bracketing root finder, vectorised over parameter
rows, Chinchilla's closed-form optimum, and the two problems every plan reduces to.

- :func:`budget_optimum`: the loss-minimising (N, D) for a training budget, within limits;
- :func:`least_flops`: the least training (+ inference) FLOPs that reach a target loss.

For the Chinchilla form L = E + A/N^α + B/D^β with C = 6·N·D the optimum is closed form
(Hoffmann et al. 2022, eq. 4): with G = (αA/(βB))^{1/(α+β)}, N_opt = G·(C/6)^{β/(α+β)},
D_opt = G^{-1}·(C/6)^{α/(α+β)}, and the compute-optimal loss is
L*(C) = E + (A·G^{-α} + B·G^{β})·(C/6)^{-αβ/(α+β)}, which inverts in closed form for the least
compute of a target loss. Other laws, caps on a non-Chinchilla form, inference-aware plans and
counted FLOPs are solved numerically along one variable, x = ln N (see :func:`grid_argmin`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.plan.limits import FORWARD_SHARE, MAX_COUNT, Limits, param_bounds
from scalinglab.plan.surface import Surface

__all__ = [
    "Solution",
    "budget_optimum",
    "grid_argmin",
    "least_flops",
    "least_flops_any",
    "optimal_loss",
    "solve_decreasing",
    "tokens_for_loss",
]

_GRID_POINTS = 129
_ZOOM_STEPS = 12
_ROOT_STEPS = 200


_GRID_POINTS = 129


_ZOOM_STEPS = 12


_ROOT_STEPS = 200


def grid_argmin(
    fun: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Minimise ``fun`` over ``x`` in ``[lo, hi]`` row by row, by a zooming bracketing grid.

    ``fun`` maps ``x`` ``[K, m]`` to values ``[K, m]`` (rows are independent problems, e.g.
    bootstrap resamples). Each step evaluates ``_GRID_POINTS`` points per row and keeps the two
    cells around the smallest value, shrinking the bracket 64-fold.

    Hand-written rather than ``scipy.optimize.minimize_scalar`` because it treats every
    resample in one vectorised call per step (a bootstrap of 1 000 fits costs a dozen law
    evaluations, not 30 000), and because the first grid brackets the global minimum at its
    resolution even where an objective is not unimodal. The objectives here are unimodal in
    x = ln N: for Chinchilla's form along C = 6·N·D, A·e^{-αx} + B'·e^{βx} is a sum of convex
    exponentials; Kaplan's form is an increasing function of such a sum (quasi-convex); so the
    kept bracket always holds the minimum and the result is exact to the final bracket width.
    The data-constrained form has no such proof; there the first grid (1/128 of the range in
    ln N) is what finds the best basin. Non-finite values (infeasible points) count as +inf.
    Returns the minimiser per row.
    """
    lo = np.asarray(lo, dtype=float).copy()
    hi = np.asarray(hi, dtype=float).copy()
    t = np.linspace(0.0, 1.0, _GRID_POINTS)
    rows = np.arange(len(lo))
    best = 0.5 * (lo + hi)
    for _ in range(_ZOOM_STEPS):
        x = lo[:, None] + (hi - lo)[:, None] * t[None, :]
        y = np.asarray(fun(x), dtype=float)
        y = np.where(np.isfinite(y), y, np.inf)
        i = np.argmin(y, axis=1)
        best = x[rows, i]
        lo = x[rows, np.maximum(i - 1, 0)]
        hi = x[rows, np.minimum(i + 1, _GRID_POINTS - 1)]
        if np.all(hi - lo <= 1e-12 * np.maximum(1.0, np.abs(best))):
            break
    return best


def solve_decreasing(
    fun: Callable[[np.ndarray], np.ndarray], target: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Solve ``fun(x) = target`` elementwise for ``fun`` decreasing in ``x`` on ``[lo, hi]``.

    Vectorised Illinois (modified regula falsi) with a bisection step every eighth iteration,
    all elements at once: scipy's bracketing root finders (``brentq``) are scalar, and a plan
    solves thousands of these per bootstrap. The bracket always holds the root, so it cannot
    fail; it typically converges in about ten evaluations. Elements with ``fun(hi) > target``
    have no root in range and return +inf; those with ``fun(lo) <= target`` return ``lo``.
    """
    lo = np.array(lo, dtype=float, copy=True)
    hi = np.array(hi, dtype=float, copy=True)
    target = np.broadcast_to(np.asarray(target, dtype=float), lo.shape)
    with np.errstate(invalid="ignore"):
        f_lo = np.asarray(fun(lo), dtype=float) - target
        f_hi = np.asarray(fun(hi), dtype=float) - target
    none = ~(f_hi <= 0)
    done = f_lo <= 0
    best_x = np.where(done, lo, hi)
    best_f = np.where(done, 0.0, np.abs(f_hi))
    side = np.zeros(lo.shape, dtype=int)
    x_tol = 1e-11 * np.maximum(1.0, np.abs(hi))
    f_tol = 1e-14 * np.maximum(1.0, np.abs(target))
    for step in range(_ROOT_STEPS):
        active = ~(none | done) & (hi - lo > x_tol) & (best_f > f_tol)
        if not np.any(active):
            break
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
            bisect = ~np.isfinite(x) | (x <= lo) | (x >= hi) | (step % 8 == 7)
            x = np.where(bisect, 0.5 * (lo + hi), x)
            f_x = np.asarray(fun(x), dtype=float) - target
        f_x = np.where(np.isnan(f_x), np.inf, f_x)
        right = f_x > 0  # still above the target: the root lies in (x, hi]
        # Illinois: when one end is kept twice in a row, halve its value to unstick it.
        f_hi = np.where(right & (side == 1), 0.5 * f_hi, f_hi)
        f_lo = np.where(~right & (side == -1), 0.5 * f_lo, f_lo)
        lo = np.where(active & right, x, lo)
        f_lo = np.where(active & right, f_x, f_lo)
        hi = np.where(active & ~right, x, hi)
        f_hi = np.where(active & ~right, f_x, f_hi)
        side = np.where(right, 1, -1)
        better = active & (np.abs(f_x) < best_f)
        best_x = np.where(better, x, best_x)
        best_f = np.where(better, np.abs(f_x), best_f)
    # Where the bracket closed before |f| did, its midpoint is the root to within x_tol.
    closed = ~(none | done) & (hi - lo <= x_tol)
    best_x = np.where(closed & (best_f > f_tol), 0.5 * (lo + hi), best_x)
    return np.where(none, np.inf, best_x)


def _chinchilla_parts(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    e, a, b, alpha, beta = (rows[:, i] for i in range(5))
    g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
    return e, a, b, alpha, beta, g


def _chinchilla_optimum(rows: np.ndarray, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form N_opt, D_opt with C = 6·N·D (Hoffmann et al. 2022, eq. 4)."""
    _, _, _, alpha, beta, g = _chinchilla_parts(rows)
    half = flops / FLOPS_PER_PARAM_TOKEN
    params = g * half ** (beta / (alpha + beta))
    return params, half / params


def _chinchilla_least_flops(rows: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Closed-form inverse of L*(C) = E + (A·G^-α + B·G^β)·(C/6)^(-αβ/(α+β)); inf if ≤ E."""
    e, a, b, alpha, beta, g = _chinchilla_parts(rows)
    scale = a * g ** (-alpha) + b * g**beta
    gamma = alpha * beta / (alpha + beta)
    gap = target - e
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        flops = FLOPS_PER_PARAM_TOKEN * (gap / scale) ** (-1.0 / gamma)
    return np.where(gap > 0, flops, np.inf)


@dataclass(frozen=True)
class Solution:
    params: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray  # training FLOPs actually spent
    loss: np.ndarray


def budget_optimum(surf: Surface, ks: np.ndarray, flops: np.ndarray, limits: Limits) -> Solution:
    """The loss-minimising (N, D) for training budgets ``flops`` [K], one per row ``ks``."""
    flops = np.broadcast_to(np.asarray(flops, dtype=float), ks.shape).copy()
    cap_n, cap_u = limits.max_params, limits.max_unique_tokens
    if surf.chinchilla and limits.counted is None:
        params, tokens = _chinchilla_optimum(surf.rows[ks], flops)
        # The objective is convex in ln N along 6·N·D = C, so the optimum within an interval
        # of N is the unconstrained one clipped to it.
        if cap_u is not None:
            params = np.maximum(params, flops / (FLOPS_PER_PARAM_TOKEN * cap_u))
        if cap_n is not None:
            params = np.minimum(params, cap_n)
        tokens = flops / (FLOPS_PER_PARAM_TOKEN * params)
        if cap_u is not None:
            tokens = np.minimum(tokens, cap_u)
        spent = FLOPS_PER_PARAM_TOKEN * params * tokens
        loss = surf.loss(ks, params[:, None], tokens[:, None])[:, 0]
        return Solution(params, tokens, spent, loss)

    lo, hi = param_bounds(limits, flops)
    lo_k = np.full(len(ks), lo)
    # D ≥ 1: N ≤ the N at which one token already costs the budget.
    if limits.counted is None:
        hi = np.minimum(hi, np.log(flops / FLOPS_PER_PARAM_TOKEN))
    if cap_u is not None and not surf.repeats:
        # One epoch at most: D ≤ U, so N ≥ the N whose FLOPs per token spend C on U tokens.
        lo_k = np.maximum(lo_k, _log_params_for_flops_per_token(limits, flops / cap_u, lo, hi))

    def objective(x: np.ndarray) -> np.ndarray:
        params = np.exp(x)
        tokens = flops[:, None] / limits.flops_per_token(params)
        tokens = np.maximum(tokens, 1.0)
        if cap_u is not None and not surf.repeats:
            tokens = np.minimum(tokens, cap_u)
        return surf.loss(ks, params, tokens, unique_cap=cap_u)

    infeasible = lo_k > hi
    x = grid_argmin(objective, np.minimum(lo_k, hi), hi)
    params = np.exp(np.where(infeasible, hi, x))
    tokens = flops / limits.flops_per_token(params)
    if cap_u is not None and not surf.repeats:
        tokens = np.minimum(tokens, cap_u)
    spent = limits.flops_per_token(params) * tokens
    loss = surf.loss(ks, params[:, None], tokens[:, None], unique_cap=cap_u)[:, 0]
    return Solution(params, tokens, spent, loss)


def _log_params_for_flops_per_token(
    limits: Limits, per_token: np.ndarray, lo: float, hi: np.ndarray
) -> np.ndarray:
    """ln N at which training costs ``per_token`` FLOPs per token (inverse of FLOPs(N)/token)."""
    if limits.counted is None:
        return np.log(per_token / FLOPS_PER_PARAM_TOKEN)
    return -solve_decreasing(
        lambda neg_x: limits.flops_per_token(np.exp(-neg_x)),
        per_token,
        -np.asarray(hi, dtype=float),
        np.full(np.shape(per_token), -lo),
    )


def tokens_for_loss(
    surf: Surface, ks: np.ndarray, params: np.ndarray, target: np.ndarray, limits: Limits
) -> np.ndarray:
    """D_ℓ(N): the tokens at which L(N, D) = target, per row ``ks`` (inf if none)."""
    cap_u = limits.max_unique_tokens
    d_max = cap_u if (cap_u is not None and not surf.repeats) else MAX_COUNT
    if surf.chinchilla:
        e, a, b, alpha, beta = (surf.rows[ks, i][:, None] for i in range(5))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            gap = target[:, None] - e - a * params ** (-alpha)
            tokens = (b / gap) ** (1.0 / beta)
        tokens = np.where(gap > 0, np.maximum(tokens, 1.0), np.inf)
        return np.where(tokens <= d_max, tokens, np.inf)
    shape = params.shape
    # Solve in ln(L(N, D) - L(N, D_max)) against ln D: the D-term of these laws is close to a
    # power of D, so the transformed equation is nearly linear and regula falsi converges in a
    # few steps instead of crawling along a convex curve.
    floor = surf.loss(ks, params, np.full(shape, d_max), unique_cap=cap_u)
    with np.errstate(invalid="ignore", divide="ignore"):
        goal = np.log(target[:, None] - floor)

    def excess(log_tokens: np.ndarray) -> np.ndarray:
        loss = surf.loss(ks, params, np.exp(log_tokens).reshape(shape), unique_cap=cap_u)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(np.maximum(loss - floor, 0.0))

    reachable = np.isfinite(goal)
    log_tokens = solve_decreasing(
        excess,
        np.where(reachable, goal, 0.0),
        np.zeros(shape),
        np.full(shape, math.log(d_max)),
    )
    return np.where(reachable, np.exp(log_tokens), np.inf)


def least_flops(
    surf: Surface,
    ks: np.ndarray,
    target: np.ndarray,
    limits: Limits,
    inference_tokens: float = 0.0,
) -> Solution:
    """Least training (+ inference) FLOPs at which rows ``ks`` reach ``target`` loss.

    Minimises FLOPs(N)·D_ℓ(N) + FLOPs(N)/3·T over N within the limits; with T = 0 this is the
    least training compute for the target. Rows that cannot reach it get +inf.
    """
    target = np.broadcast_to(np.asarray(target, dtype=float), ks.shape).copy()
    if surf.chinchilla and limits.counted is None and not limits.any_cap and not inference_tokens:
        flops = _chinchilla_least_flops(surf.rows[ks], target)
        params, tokens = _chinchilla_optimum(surf.rows[ks], np.where(np.isfinite(flops), flops, 6))
        params = np.where(np.isfinite(flops), params, np.inf)
        tokens = np.where(np.isfinite(flops), tokens, np.inf)
        return Solution(params, tokens, flops, target)

    lo, hi = param_bounds(limits, target)
    # Smallest N that can reach the target at all (with the most data allowed): below it D_ℓ is
    # infinite, so the search starts there rather than hoping a grid point lands inside.
    cap_u = limits.max_unique_tokens
    d_max = cap_u if (cap_u is not None and not surf.repeats) else MAX_COUNT

    def loss_at_log_n(x: np.ndarray) -> np.ndarray:
        return surf.loss(ks, np.exp(x), np.full(x.shape, d_max), unique_cap=cap_u)

    x_min = solve_decreasing(
        loss_at_log_n, target[:, None], np.full((len(ks), 1), lo), hi[:, None]
    )[:, 0]
    reachable = np.isfinite(x_min)
    # Nudge above the boundary, where D_ℓ is infinite.
    start = np.where(reachable, np.minimum(x_min + 1e-9 * max(1.0, abs(lo)), hi), lo)

    def total(x: np.ndarray) -> np.ndarray:
        params = np.exp(x)
        tokens = tokens_for_loss(surf, ks, params, target, limits)
        per_token = limits.flops_per_token(params)
        with np.errstate(invalid="ignore", over="ignore"):
            return per_token * tokens + FORWARD_SHARE * per_token * inference_tokens

    x = grid_argmin(total, start, np.maximum(start, hi))
    params = np.exp(x)
    tokens = tokens_for_loss(surf, ks, params[:, None], target, limits)[:, 0]
    ok = reachable & np.isfinite(tokens)
    params = np.where(ok, params, np.inf)
    tokens = np.where(ok, tokens, np.inf)
    with np.errstate(invalid="ignore"):
        flops = np.where(ok, limits.flops_per_token(params) * tokens, np.inf)
    return Solution(params, tokens, flops, target)


def optimal_loss(surf: Surface, ks: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """Compute-optimal loss L*(C) of rows ``ks`` at budgets ``flops`` (no limits)."""
    if surf.kind == "c":
        return surf.loss_of_flops(ks, np.broadcast_to(flops, ks.shape)[:, None])[:, 0]
    return budget_optimum(surf, ks, flops, Limits()).loss


def least_flops_any(surf: Surface, ks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least compute to reach ``target`` (no limits), for laws of N and D or of C alone."""
    if surf.kind == "nd":
        return least_flops(surf, ks, target, Limits()).flops
    hi = math.log(MAX_COUNT * MAX_COUNT)
    log_c = solve_decreasing(
        lambda x: surf.loss_of_flops(ks, np.exp(x)),
        target[:, None],
        np.zeros((len(ks), 1)),
        np.full((len(ks), 1), hi),
    )[:, 0]
    return np.exp(log_c)
