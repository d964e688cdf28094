"""Planning with a fitted law: how to spend a budget, and what an improvement is worth in compute.

A scaling law is fitted to decide how to spend a finite budget. This module turns a
:class:`~scalinglab.fit.Fit` into decisions:

- :func:`allocate`: the compute-optimal parameters N and tokens D for a FLOP budget, the loss
  they reach (with an interval when the fit carries a bootstrap) and the budget in every unit
  (PF-days, accelerator-hours, days, energy, money), under optional limits: a parameter cap
  (memory or serving), a cap on unique tokens (repetition modelled only by a data-constrained
  fit) and an expected number of inference tokens (Sardana & Frankle 2023);
- :func:`least_compute`: the least training compute that reaches a target loss, or a clear
  "unreachable";
- :func:`frontier`: :func:`allocate` over a range of budgets, as a table;
- :func:`compare`: the compute-equivalent multiplier k(C) of recipe B over recipe A, i.e. B
  reaches at C/k the loss that A reaches at C (with a paired-bootstrap interval).

Every plan says when its N, D or D/N lie outside the range of the runs the fit was made on.

Method
------
For the Chinchilla form L = E + A/N^α + B/D^β with C = 6·N·D the optimum is closed form
(Hoffmann et al. 2022, eq. 4): with G = (αA/(βB))^{1/(α+β)},
N_opt = G·(C/6)^{β/(α+β)}, D_opt = G^{-1}·(C/6)^{α/(α+β)}, and the compute-optimal loss is
L*(C) = E + (A·G^{-α} + B·G^{β})·(C/6)^{-αβ/(α+β)}, which inverts in closed form for the least
compute of a target loss. Other laws, caps on a non-Chinchilla form, inference-aware plans and
counted FLOPs are solved numerically along one variable, x = ln N (see :func:`_grid_argmin`).

Least compute for a target loss ℓ is solved as its own problem, min over N of
FLOPs(N)·D_ℓ(N) where D_ℓ(N) is the D at which L(N, D) = ℓ; the inference-aware optimum is the
same problem with FLOPs(N)·D_ℓ(N) + FLOPs_inference(N)·T (Sardana & Frankle 2023, §2).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalinglab.counting import TransformerShape, count_params, flops_per_token
from scalinglab.units import ComputeCost, compute_cost

if TYPE_CHECKING:
    from scalinglab.fit import Fit
    from scalinglab.laws import Law

__all__ = [
    "Allocation",
    "Comparison",
    "PlanError",
    "allocate",
    "compare",
    "frontier",
    "least_compute",
]

# C = 6·N·D: 2 FLOP per parameter per token forward, 4 backward (Kaplan et al. 2020, §2.1);
# inference is the forward pass alone, 2·N per token (Sardana & Frankle 2023, eq. 2).
_TRAIN_FLOPS_PER_PARAM_TOKEN = 6.0
_FORWARD_SHARE = 1.0 / 3.0
# Search range for N and D when nothing else bounds them: beyond 10^30 parameters or tokens no
# plan means anything, and the bound keeps every input finite for the laws' logs.
_MAX_COUNT = 1e30
_GRID_POINTS = 129
_ZOOM_STEPS = 12
_ROOT_STEPS = 200

BINDINGS = ("max_params", "max_unique_tokens", "inference")


class PlanError(ValueError):
    """A plan that cannot be made: unreachable target, unusable law, bad budget or limit.

    ``field`` names the argument at fault (``"fit"``, ``"flops"``, ``"target_loss"``,
    ``"max_params"``, ...) so that a command line can name its option; ``None`` if none is.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# ----------------------------------------------------------------------------------------------
# Public values
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocation:
    """One recommended training run: N, D, predicted loss, cost in every unit, and caveats.

    Attributes
    ----------
    budget_flops
        The budget asked for (for :func:`least_compute`, the least compute found). ``flops``
        differs from it when the limits leave part of it unspent, or for an inference-aware plan,
        which trains longer than the budget to save inference compute.
    flops
        Training compute of the recommended run, in FLOP (6·N·D, or counted for a shape).
    params, tokens, tokens_per_param
        N (in the fit's parameter basis), D and D/N.
    loss
        Predicted loss (nats) of the recommended run under the fit's point estimate.
    loss_interval, interval_level
        Percentile interval of the loss the bootstrap resamples predict *for the recommended N
        and D*; ``None`` without a bootstrap.
    params_interval, tokens_interval, flops_interval
        Percentile intervals of the optimum each bootstrap resample would recommend.
    cost
        ``flops`` in PF-days, accelerator-hours, wall days, energy (kWh) and money.
    binding
        ``None`` when no limit changes the plan, else the limits that do, comma-separated, from
        ``"max_params"``, ``"max_unique_tokens"``, ``"inference"``.
    epochs, unique_tokens
        Passes over the data and unique tokens used, when ``max_unique_tokens`` is given.
    inference_tokens, inference_flops, total_flops
        Expected inference tokens, their forward FLOPs (2·N per token, or a third of the
        counted training FLOPs per token) and training plus inference FLOPs.
    unconstrained_params, unconstrained_tokens, unconstrained_loss
        The optimum for the same budget without limits (when a limit was given), so that the
        loss paid for a cap is ``loss - unconstrained_loss``.
    extrapolation
        Decades by which ``params``, ``tokens``, ``tokens_per_param`` and ``flops`` lie outside
        the fit's domain (0 inside, NaN when the fit has no domain).
    warnings
        Human sentences: limits that bind, extrapolation, unknown domain, unmodelled repetition.
    shape
        The nearest real transformer shape when FLOPs were counted for a shape, else ``None``.
    law, method, flops_per_token
        The law's name, ``"closed-form"`` or ``"numerical"``, and ``"6N"`` or
        ``"per-operation"``.
    """

    budget_flops: float
    flops: float
    params: float
    tokens: float
    tokens_per_param: float
    loss: float
    loss_interval: tuple[float, float] | None
    interval_level: float | None
    params_interval: tuple[float, float] | None
    tokens_interval: tuple[float, float] | None
    flops_interval: tuple[float, float] | None
    cost: ComputeCost
    binding: str | None
    epochs: float | None
    unique_tokens: float | None
    inference_tokens: float | None
    inference_flops: float | None
    total_flops: float
    unconstrained_params: float | None
    unconstrained_tokens: float | None
    unconstrained_loss: float | None
    extrapolation: Mapping[str, float]
    warnings: tuple[str, ...]
    shape: TransformerShape | None
    law: str
    method: str
    flops_per_token: str

    @property
    def pf_days(self) -> float:
        """Training compute in PF-days."""
        return self.cost.pf_days

    @property
    def loss_penalty(self) -> float | None:
        """Loss paid for the limits (nats): ``loss - unconstrained_loss``."""
        if self.unconstrained_loss is None:
            return None
        return self.loss - self.unconstrained_loss

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready mapping (intervals as ``*_low``/``*_high``, NaN as ``None``)."""
        out: dict[str, Any] = {
            "law": self.law,
            "budget_flops": self.budget_flops,
            "flops": self.flops,
            "pf_days": self.cost.pf_days,
            "params": self.params,
            "tokens": self.tokens,
            "tokens_per_param": self.tokens_per_param,
            "loss": self.loss,
            "interval_level": self.interval_level,
        }
        for name, interval in (
            ("loss", self.loss_interval),
            ("params", self.params_interval),
            ("tokens", self.tokens_interval),
            ("flops", self.flops_interval),
        ):
            out[f"{name}_low"] = None if interval is None else interval[0]
            out[f"{name}_high"] = None if interval is None else interval[1]
        out.update(
            binding=self.binding,
            epochs=self.epochs,
            unique_tokens=self.unique_tokens,
            inference_tokens=self.inference_tokens,
            inference_flops=self.inference_flops,
            total_flops=self.total_flops,
            unconstrained_params=self.unconstrained_params,
            unconstrained_tokens=self.unconstrained_tokens,
            unconstrained_loss=self.unconstrained_loss,
            loss_penalty=self.loss_penalty,
        )
        cost = self.cost.to_dict()
        cost.pop("flops")
        cost.pop("pf_days")
        out.update(cost)
        for key, decades in self.extrapolation.items():
            out[f"extrapolation_{key}"] = decades
        out.update(
            method=self.method,
            flops_per_token=self.flops_per_token,
            shape=None if self.shape is None else dict(self.shape.__dict__),
            warnings=list(self.warnings),
        )
        return {k: _none_if_nan(v) for k, v in out.items()}


@dataclass(frozen=True)
class Comparison:
    """Compute-equivalent multiplier of recipe B over recipe A at each budget.

    Attributes
    ----------
    flops
        Budgets C (FLOP) at which A is evaluated.
    multiplier
        k(C): B reaches at C/k the loss A reaches at C. k > 1 means B is worth k× compute;
        0 means B never reaches that loss.
    interval, level
        Percentile interval of k from paired bootstrap resamples (resample i of A with
        resample i of B), or ``None`` unless both fits carry a bootstrap.
    loss_a, loss_b
        Compute-optimal loss of A and of B at C.
    flops_b
        Least compute with which B reaches ``loss_a`` (C/k).
    law_a, law_b
        The laws compared.
    warnings
        Budgets outside either fit's domain, and unreachable losses.
    """

    flops: np.ndarray
    multiplier: np.ndarray
    interval: tuple[np.ndarray, np.ndarray] | None
    level: float | None
    loss_a: np.ndarray
    loss_b: np.ndarray
    flops_b: np.ndarray
    law_a: str
    law_b: str
    warnings: tuple[str, ...] = field(default=())

    def to_frame(self) -> pd.DataFrame:
        """One row per budget: flops, pf_days, multiplier (+ interval), losses, flops_b."""
        frame = pd.DataFrame(
            {
                "flops": self.flops,
                "pf_days": self.flops / (1e15 * 86_400.0),
                "multiplier": self.multiplier,
                "multiplier_low": np.nan if self.interval is None else self.interval[0],
                "multiplier_high": np.nan if self.interval is None else self.interval[1],
                "loss_a": self.loss_a,
                "loss_b": self.loss_b,
                "flops_b": self.flops_b,
            }
        )
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping: ``level``, laws, warnings and ``rows`` (one dict per budget)."""
        rows = [
            {k: _none_if_nan(v) for k, v in row.items()}
            for row in self.to_frame().to_dict(orient="records")
        ]
        return {
            "law_a": self.law_a,
            "law_b": self.law_b,
            "level": self.level,
            "rows": rows,
            "warnings": list(self.warnings),
        }


# ----------------------------------------------------------------------------------------------
# The loss surfaces of a fit: the point estimate and its bootstrap resamples
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Surface:
    """A fit reduced to what planning needs: its law and parameter rows.

    ``rows[0]`` is the point estimate, ``rows[1:]`` the usable bootstrap resamples (rows with
    a non-finite value dropped), columns in ``law.param_names`` order.
    """

    fit: Fit
    law: Law
    rows: np.ndarray
    kind: str  # "nd": a law of params and tokens (maybe unique_tokens); "c": of flops alone
    batched: bool  # the law evaluates many parameter rows at once (see _batched_predict)

    @property
    def chinchilla(self) -> bool:
        return self.law.name == "chinchilla"

    @property
    def repeats(self) -> bool:
        """The law models repeated data (it takes ``unique_tokens``)."""
        return "unique_tokens" in self.law.inputs

    @property
    def n_boot(self) -> int:
        return len(self.rows) - 1

    def theta(self, k: int) -> dict[str, float]:
        return dict(zip(self.law.param_names, (float(v) for v in self.rows[k]), strict=True))

    def evaluate(self, ks: np.ndarray, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Loss ``[K, m]`` of parameter rows ``ks`` at ``inputs`` ``[K, m]`` (row j with ks[j])."""
        if self.batched:
            return _batched_predict(self.law, self.rows[ks], inputs)
        out = np.empty(np.shape(next(iter(inputs.values()))))
        for j, k in enumerate(ks):
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                out[j] = self.law.predict(
                    self.theta(int(k)), **{n: v[j] for n, v in inputs.items()}
                )
        return out

    def loss(
        self,
        ks: np.ndarray,
        params: np.ndarray,
        tokens: np.ndarray,
        unique_cap: float | None = None,
    ) -> np.ndarray:
        """Loss ``[K, m]`` of rows ``ks`` at ``params``/``tokens`` ``[K, m]``.

        ``unique_cap`` is the cap on unique tokens of a data-constrained law (the data seen are
        ``min(D, cap)`` unique tokens); laws without repetition ignore it.
        """
        params, tokens = np.broadcast_arrays(
            np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        )
        inputs = {"params": params, "tokens": tokens}
        if self.repeats:
            inputs["unique_tokens"] = (
                tokens if unique_cap is None else np.minimum(tokens, unique_cap)
            )
        return self.evaluate(ks, inputs)

    def loss_of_flops(self, ks: np.ndarray, flops: np.ndarray) -> np.ndarray:
        """Loss ``[K, m]`` of a law of compute alone."""
        return self.evaluate(ks, {"flops": np.asarray(flops, dtype=float)})

    def irreducible(self, k: int = 0) -> float:
        """The loss no compute goes below: E where the law has one, else 0."""
        theta = self.theta(k)
        return float(theta.get("E", 0.0))


def _surface(fit: Fit | str | Path, *, need: str = "nd") -> _Surface:
    """Resolve ``fit`` (a Fit or a fit.json path) to a :class:`_Surface`, checking the law."""
    from scalinglab.fit import load_fit  # the fit engine is upstream; imported when used
    from scalinglab.laws import LawError, get_law

    if isinstance(fit, str | Path):
        if not Path(fit).is_file():
            raise PlanError(f"no fit file at {fit}", field="fit")
        try:
            fit = load_fit(fit)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PlanError(f"cannot read the fit at {fit}: {exc}", field="fit") from exc
    try:
        law = get_law(fit.law, **dict(fit.law_options or {}))
    except LawError as exc:
        raise PlanError(f"the fit's law cannot be used: {exc}", field="fit") from exc
    missing = [p for p in law.param_names if p not in fit.params]
    if missing:
        raise PlanError(
            f"the fit of law {law.name!r} lacks parameters {', '.join(missing)}; "
            f"planning needs {', '.join(law.param_names)}",
            field="fit",
        )
    inputs = set(law.inputs)
    if {"params", "tokens"} <= inputs:
        kind = "nd"
    elif inputs == {"flops"}:
        kind = "c"
    else:
        kind = "other"
    if kind == "other" or (need == "nd" and kind != "nd"):
        what = "params and tokens" if need == "nd" else "params and tokens, or of flops"
        options = ", ".join(f"{k}={v!r}" for k, v in dict(fit.law_options or {}).items())
        raise PlanError(
            f"law {law.name!r}{f' ({options})' if options else ''} predicts loss from "
            f"{', '.join(law.inputs)} only; this needs a law of {what} "
            "(chinchilla, kaplan-nd, data-constrained)",
            field="fit",
        )
    point = np.array([float(fit.params[p]) for p in law.param_names])
    if not np.all(np.isfinite(point)):
        raise PlanError(f"the fit's parameters are not all finite: {dict(fit.params)}", field="fit")
    rows = point[None, :]
    boot = getattr(fit, "bootstrap_params", None)
    if boot is not None:
        boot = np.asarray(boot, dtype=float)
        if boot.ndim == 2 and boot.shape[1] == len(point) and len(boot):
            boot = boot[np.all(np.isfinite(boot), axis=1)]
            rows = np.concatenate([rows, boot], axis=0)
    return _Surface(fit=fit, law=law, rows=rows, kind=kind, batched=_batches(law, rows))


def _batched_predict(law: Any, rows: np.ndarray, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Loss ``[K, m]`` for K parameter rows, each at its own m inputs, in one law evaluation.

    The laws' ``log_predict`` takes raw parameters ``[K, P]`` and broadcasts them against the
    design's arrays; a design of ``[K, m]`` arrays therefore pairs row k with inputs k and gives
    ``[1, K, m]``. One call replaces K calls of ``predict``, which matters for bootstraps of a
    thousand resamples. :func:`_batches` checks this against ``predict`` before it is relied on.
    """
    design = law.design({name: np.asarray(v, dtype=float) for name, v in inputs.items()})
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_loss = law.log_predict(law.raw_array(rows), design)
        return np.exp(np.reshape(log_loss, np.shape(next(iter(inputs.values())))))


def _batches(law: Any, rows: np.ndarray) -> bool:
    """Whether :func:`_batched_predict` agrees with ``law.predict`` row by row."""
    if not all(hasattr(law, name) for name in ("design", "log_predict", "raw_array")):
        return False
    # Three distinct parameter rows (scaled copies of the point estimate stay valid), each
    # with its own inputs, so that a mispairing of rows and inputs would show.
    probe = rows[0][None, :] * np.array([[1.0], [1.05], [0.95]])
    scales = np.array([[1e7, 3e9, 2e11], [5e8, 1e10, 4e12], [2e6, 8e8, 6e13]])
    inputs = {name: scales * (1.0 + 0.5 * i) for i, name in enumerate(law.inputs)}
    if "unique_tokens" in inputs:
        inputs["unique_tokens"] = np.minimum(inputs["unique_tokens"], inputs["tokens"] / 3.0)
    try:
        batched = _batched_predict(law, probe, inputs)
        single = np.stack(
            [
                law.predict(
                    dict(zip(law.param_names, probe[j], strict=True)),
                    **{name: v[j] for name, v in inputs.items()},
                )
                for j in range(len(probe))
            ]
        )
    except (ValueError, TypeError, IndexError, KeyError):
        return False
    return batched.shape == single.shape and bool(np.allclose(batched, single, rtol=1e-12))


# ----------------------------------------------------------------------------------------------
# Numerical machinery
# ----------------------------------------------------------------------------------------------


def _grid_argmin(
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


def _solve_decreasing(
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


@dataclass(frozen=True)
class _Limits:
    max_params: float | None = None
    max_unique_tokens: float | None = None
    counted: _CountedFlops | None = None

    def flops_per_token(self, params: np.ndarray) -> np.ndarray:
        if self.counted is None:
            return _TRAIN_FLOPS_PER_PARAM_TOKEN * params
        return self.counted(params)

    @property
    def any_cap(self) -> bool:
        return self.max_params is not None or self.max_unique_tokens is not None


@dataclass(frozen=True)
class _CountedFlops:
    """Training FLOPs per token as a smooth function of N, from real shapes (counting.py).

    Real shapes make FLOPs per token a step function of N; the search uses a piecewise-linear
    interpolation of ln(FLOPs per token / N) in ln N over shapes spanning ``[lo, hi]``, and the
    plan then snaps to the nearest real shape.
    """

    log_n: np.ndarray
    log_ratio: np.ndarray
    options: Mapping[str, Any]
    basis: str

    def __call__(self, params: np.ndarray) -> np.ndarray:
        params = np.asarray(params, dtype=float)
        ratio = np.exp(np.interp(np.log(params), self.log_n, self.log_ratio))
        return params * ratio

    @property
    def bounds(self) -> tuple[float, float]:
        return float(np.exp(self.log_n[0])), float(np.exp(self.log_n[-1]))

    def shape(self, params: float) -> tuple[TransformerShape, float, float]:
        """The real shape nearest ``params``: (shape, its N in the basis, FLOPs per token)."""
        if not math.isfinite(params):
            raise PlanError("no real shape reaches this plan", field="shape")
        shape = _shape_for_params(params, self.options, self.basis)
        return shape, _basis_params(shape, self.basis), float(flops_per_token(shape).per_operation)


def _shape_for_params(params: float, options: Mapping[str, Any], basis: str) -> TransformerShape:
    try:
        from scalinglab.train.shapes import shape_for_params  # lazy: no torch for planning
    except ImportError as exc:
        raise PlanError(
            "counted FLOPs need scalinglab.train.shapes.shape_for_params, which this install "
            "lacks; plan with 6·N·D instead (no shape)",
            field="shape",
        ) from exc
    try:
        return shape_for_params(float(params), basis=basis, **dict(options))
    except (TypeError, ValueError) as exc:
        raise PlanError(f"shape options {dict(options)}: {exc}", field="shape") from exc


def _basis_params(shape: TransformerShape, basis: str) -> float:
    counts = count_params(shape)
    return float(counts.non_embedding if basis == "non_embedding" else counts.total)


def _counted_flops(
    options: Mapping[str, Any], basis: str, around: float, span_decades: float = 1.0
) -> _CountedFlops:
    """Tabulate counted FLOPs per token at 11 real shapes over ``around`` × 10^±span_decades.

    FLOPs per token per parameter change slowly with N (a few per cent per 0.2 decade), so a
    coarse table interpolated in log space is accurate; the plan snaps to a real shape anyway.
    """
    if "vocab_size" not in options or "context_length" not in options:
        raise PlanError("shape options need vocab_size and context_length", field="shape")
    targets = np.geomspace(around / 10**span_decades, around * 10**span_decades, 11)
    pairs: dict[float, float] = {}
    for target in targets:
        shape = _shape_for_params(float(target), options, basis)
        n = _basis_params(shape, basis)
        pairs[n] = flops_per_token(shape).per_operation / n
    if len(pairs) < 2:
        raise PlanError(f"no range of real shapes around {around:.3g} parameters", field="shape")
    log_n = np.log(np.array(sorted(pairs)))
    log_ratio = np.log(np.array([pairs[n] for n in sorted(pairs)]))
    return _CountedFlops(log_n, log_ratio, MappingProxyType(dict(options)), basis)


# ----------------------------------------------------------------------------------------------
# Solvers (vectorised over parameter rows)
# ----------------------------------------------------------------------------------------------


def _chinchilla_parts(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    e, a, b, alpha, beta = (rows[:, i] for i in range(5))
    g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
    return e, a, b, alpha, beta, g


def _chinchilla_optimum(rows: np.ndarray, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form N_opt, D_opt with C = 6·N·D (Hoffmann et al. 2022, eq. 4)."""
    _, _, _, alpha, beta, g = _chinchilla_parts(rows)
    half = flops / _TRAIN_FLOPS_PER_PARAM_TOKEN
    params = g * half ** (beta / (alpha + beta))
    return params, half / params


def _chinchilla_least_flops(rows: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Closed-form inverse of L*(C) = E + (A·G^-α + B·G^β)·(C/6)^(-αβ/(α+β)); inf if ≤ E."""
    e, a, b, alpha, beta, g = _chinchilla_parts(rows)
    scale = a * g ** (-alpha) + b * g**beta
    gamma = alpha * beta / (alpha + beta)
    gap = target - e
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        flops = _TRAIN_FLOPS_PER_PARAM_TOKEN * (gap / scale) ** (-1.0 / gamma)
    return np.where(gap > 0, flops, np.inf)


def _param_bounds(limits: _Limits, flops: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """ln N search bounds before the budget's own: [ln 1, ln min(cap, 10^30)] (or a shape table)."""
    lo, hi = 0.0, math.log(_MAX_COUNT)
    if limits.counted is not None:
        n_lo, n_hi = limits.counted.bounds
        lo, hi = math.log(n_lo), math.log(n_hi)
    if limits.max_params is not None:
        hi = min(hi, math.log(limits.max_params))
    n = 1 if flops is None else len(flops)
    return lo, np.full(n, hi)


@dataclass(frozen=True)
class _Solution:
    params: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray  # training FLOPs actually spent
    loss: np.ndarray


def _budget_optimum(
    surf: _Surface, ks: np.ndarray, flops: np.ndarray, limits: _Limits
) -> _Solution:
    """The loss-minimising (N, D) for training budgets ``flops`` [K], one per row ``ks``."""
    flops = np.broadcast_to(np.asarray(flops, dtype=float), ks.shape).copy()
    cap_n, cap_u = limits.max_params, limits.max_unique_tokens
    if surf.chinchilla and limits.counted is None:
        params, tokens = _chinchilla_optimum(surf.rows[ks], flops)
        # The objective is convex in ln N along 6·N·D = C, so the optimum within an interval
        # of N is the unconstrained one clipped to it.
        if cap_u is not None:
            params = np.maximum(params, flops / (_TRAIN_FLOPS_PER_PARAM_TOKEN * cap_u))
        if cap_n is not None:
            params = np.minimum(params, cap_n)
        tokens = flops / (_TRAIN_FLOPS_PER_PARAM_TOKEN * params)
        if cap_u is not None:
            tokens = np.minimum(tokens, cap_u)
        spent = _TRAIN_FLOPS_PER_PARAM_TOKEN * params * tokens
        loss = surf.loss(ks, params[:, None], tokens[:, None])[:, 0]
        return _Solution(params, tokens, spent, loss)

    lo, hi = _param_bounds(limits, flops)
    lo_k = np.full(len(ks), lo)
    # D ≥ 1: N ≤ the N at which one token already costs the budget.
    if limits.counted is None:
        hi = np.minimum(hi, np.log(flops / _TRAIN_FLOPS_PER_PARAM_TOKEN))
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
    x = _grid_argmin(objective, np.minimum(lo_k, hi), hi)
    params = np.exp(np.where(infeasible, hi, x))
    tokens = flops / limits.flops_per_token(params)
    if cap_u is not None and not surf.repeats:
        tokens = np.minimum(tokens, cap_u)
    spent = limits.flops_per_token(params) * tokens
    loss = surf.loss(ks, params[:, None], tokens[:, None], unique_cap=cap_u)[:, 0]
    return _Solution(params, tokens, spent, loss)


def _log_params_for_flops_per_token(
    limits: _Limits, per_token: np.ndarray, lo: float, hi: np.ndarray
) -> np.ndarray:
    """ln N at which training costs ``per_token`` FLOPs per token (inverse of FLOPs(N)/token)."""
    if limits.counted is None:
        return np.log(per_token / _TRAIN_FLOPS_PER_PARAM_TOKEN)
    return -_solve_decreasing(
        lambda neg_x: limits.flops_per_token(np.exp(-neg_x)),
        per_token,
        -np.asarray(hi, dtype=float),
        np.full(np.shape(per_token), -lo),
    )


def _tokens_for_loss(
    surf: _Surface, ks: np.ndarray, params: np.ndarray, target: np.ndarray, limits: _Limits
) -> np.ndarray:
    """D_ℓ(N): the tokens at which L(N, D) = target, per row ``ks`` (inf if none)."""
    cap_u = limits.max_unique_tokens
    d_max = cap_u if (cap_u is not None and not surf.repeats) else _MAX_COUNT
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
    log_tokens = _solve_decreasing(
        excess,
        np.where(reachable, goal, 0.0),
        np.zeros(shape),
        np.full(shape, math.log(d_max)),
    )
    return np.where(reachable, np.exp(log_tokens), np.inf)


def _least_flops(
    surf: _Surface,
    ks: np.ndarray,
    target: np.ndarray,
    limits: _Limits,
    inference_tokens: float = 0.0,
) -> _Solution:
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
        return _Solution(params, tokens, flops, target)

    lo, hi = _param_bounds(limits, target)
    # Smallest N that can reach the target at all (with the most data allowed): below it D_ℓ is
    # infinite, so the search starts there rather than hoping a grid point lands inside.
    cap_u = limits.max_unique_tokens
    d_max = cap_u if (cap_u is not None and not surf.repeats) else _MAX_COUNT

    def loss_at_log_n(x: np.ndarray) -> np.ndarray:
        return surf.loss(ks, np.exp(x), np.full(x.shape, d_max), unique_cap=cap_u)

    x_min = _solve_decreasing(
        loss_at_log_n, target[:, None], np.full((len(ks), 1), lo), hi[:, None]
    )[:, 0]
    reachable = np.isfinite(x_min)
    # Nudge above the boundary, where D_ℓ is infinite.
    start = np.where(reachable, np.minimum(x_min + 1e-9 * max(1.0, abs(lo)), hi), lo)

    def total(x: np.ndarray) -> np.ndarray:
        params = np.exp(x)
        tokens = _tokens_for_loss(surf, ks, params, target, limits)
        per_token = limits.flops_per_token(params)
        with np.errstate(invalid="ignore", over="ignore"):
            return per_token * tokens + _FORWARD_SHARE * per_token * inference_tokens

    x = _grid_argmin(total, start, np.maximum(start, hi))
    params = np.exp(x)
    tokens = _tokens_for_loss(surf, ks, params[:, None], target, limits)[:, 0]
    ok = reachable & np.isfinite(tokens)
    params = np.where(ok, params, np.inf)
    tokens = np.where(ok, tokens, np.inf)
    with np.errstate(invalid="ignore"):
        flops = np.where(ok, limits.flops_per_token(params) * tokens, np.inf)
    return _Solution(params, tokens, flops, target)


def _optimal_loss(surf: _Surface, ks: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """Compute-optimal loss L*(C) of rows ``ks`` at budgets ``flops`` (no limits)."""
    if surf.kind == "c":
        return surf.loss_of_flops(ks, np.broadcast_to(flops, ks.shape)[:, None])[:, 0]
    return _budget_optimum(surf, ks, flops, _Limits()).loss


def _least_flops_any(surf: _Surface, ks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least compute to reach ``target`` (no limits), for laws of N and D or of C alone."""
    if surf.kind == "nd":
        return _least_flops(surf, ks, target, _Limits()).flops
    hi = math.log(_MAX_COUNT * _MAX_COUNT)
    log_c = _solve_decreasing(
        lambda x: surf.loss_of_flops(ks, np.exp(x)),
        target[:, None],
        np.zeros((len(ks), 1)),
        np.full((len(ks), 1), hi),
    )[:, 0]
    return np.exp(log_c)


# ----------------------------------------------------------------------------------------------
# Helpers for honest reporting
# ----------------------------------------------------------------------------------------------


def _none_if_nan(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _interval(values: np.ndarray, level: float) -> tuple[float, float] | None:
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


def _decades(value: float, bounds: tuple[float, float] | None) -> float:
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
        decades = _decades(value, bounds)
        out[key] = decades
        if decades > 0 and bounds is not None:
            side = "above" if value > bounds[1] else "below"
            notes.append(
                f"extrapolation: {_DOMAIN_LABELS[key]} = {value:.3g} lies {decades:.2f} "
                f"decades {side} the fit's range [{bounds[0]:.3g}, {bounds[1]:.3g}]"
            )
    return out, notes


def _check_positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{name} must be a number > 0, got {value!r}", field=name) from exc
    if not (math.isfinite(value) and value > 0):
        raise PlanError(f"{name} must be a finite number > 0, got {value!r}", field=name)
    return value


def _check_level(level: float) -> float:
    if not (isinstance(level, int | float) and 0 < level < 1):
        raise PlanError(f"level must be in (0, 1), got {level!r}", field="level")
    return float(level)


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    max_params: float | None
    max_unique_tokens: float | None
    inference_tokens: float | None
    gpu: str
    mfu: float
    count: int
    price_per_gpu_hour: float | None
    pue: float
    level: float
    shape: Mapping[str, Any] | None


def _options(
    max_params: float | None,
    max_unique_tokens: float | None,
    inference_tokens: float | None,
    gpu: str,
    mfu: float,
    count: int,
    price_per_gpu_hour: float | None,
    pue: float,
    level: float,
    shape: Mapping[str, Any] | None,
) -> _Options:
    inference = None
    if inference_tokens is not None:
        inference = float(inference_tokens)
        if not (math.isfinite(inference) and inference >= 0):
            raise PlanError(
                f"inference_tokens must be a finite number ≥ 0, got {inference!r}",
                field="inference_tokens",
            )
    return _Options(
        max_params=_check_positive(max_params, "max_params"),
        max_unique_tokens=_check_positive(max_unique_tokens, "max_unique_tokens"),
        inference_tokens=inference,
        gpu=gpu,
        mfu=mfu,
        count=count,
        price_per_gpu_hour=price_per_gpu_hour,
        pue=pue,
        level=_check_level(level),
        shape=None if shape is None else MappingProxyType(dict(shape)),
    )


def _limits(
    surf: _Surface, opts: _Options, solve: Callable[[_Limits], _Solution]
) -> tuple[_Limits, list[str]]:
    """The limits of ``opts``; with a shape, a counted-FLOPs table that holds the solution.

    The table is centred on the 6·N·D solution of the same problem (``solve``), and moved
    while the counted solution lands at its edge.
    """
    notes: list[str] = []
    limits = _Limits(max_params=opts.max_params, max_unique_tokens=opts.max_unique_tokens)
    if opts.shape is None:
        return limits, notes
    basis = str(getattr(surf.fit, "param_basis", "unknown"))
    if basis not in ("total", "non_embedding"):
        notes.append(
            f"the fit's parameter basis is {basis!r}: counted FLOPs assume N counts "
            "every parameter (total)"
        )
        basis = "total"
    around = float(solve(limits).params[0])
    for _ in range(4):
        if not math.isfinite(around):
            break
        counted = _counted_flops(opts.shape, basis, around)
        limits = dataclasses.replace(limits, counted=counted)
        found = float(solve(limits).params[0])
        lo, hi = counted.bounds
        if not (math.isfinite(found) and (found < lo * 1.05 or found > hi / 1.05)):
            break
        if opts.max_params is not None and found >= opts.max_params * (1 - 1e-9):
            break  # held at the cap, not at the table's edge
        around = found
    return limits, notes


def _repetition_note(surf: _Surface, opts: _Options, tokens: float) -> list[str]:
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


def _finish(
    surf: _Surface,
    opts: _Options,
    *,
    budget_flops: float,
    params: float,
    tokens: float,
    flops: float,
    limits: _Limits,
    bindings: list[str],
    notes: list[str],
    boot_params: np.ndarray | None,
    boot_tokens: np.ndarray | None,
    boot_flops: np.ndarray | None,
    unconstrained: _Solution | None,
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
    level = opts.level if surf.n_boot else None
    loss_interval = params_interval = tokens_interval = flops_interval = None
    if surf.n_boot:
        loss_interval = _interval(losses[1:], opts.level)
        if boot_params is not None:
            params_interval = _interval(boot_params, opts.level)
            tokens_interval = _interval(boot_tokens, opts.level)
            flops_interval = _interval(boot_flops, opts.level)
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
    inference_flops = None if inference is None else _FORWARD_SHARE * per_token * inference
    extrapolation, range_notes = _extrapolation(
        surf.fit,
        {
            "params": params,
            "tokens": tokens,
            "tokens_per_param": tokens / params,
            "flops": flops,
        },
    )
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
        warnings=tuple(notes + range_notes),
        shape=shape,
        law=surf.law.name,
        method=method,
        flops_per_token="6N" if limits.counted is None else "per-operation",
    )


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
        A :class:`~scalinglab.fit.Fit` of a law of params and tokens, or the path of a fit.json.
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

    >>> from scalinglab.fit import Fit
    >>> fit = Fit.from_params("chinchilla", dict(E=1.8172, A=482.01, B=2085.43,
    ...                                         alpha=0.3478, beta=0.3658))
    >>> plan = allocate(fit, 5.76e23)
    >>> f"{plan.params:.3g} {plan.tokens:.3g} {plan.tokens_per_param:.1f}"
    '7.22e+10 1.33e+12 18.4'
    """
    budget = _check_positive(flops, "flops")
    assert budget is not None
    opts = _options(
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
    surf = _surface(fit)
    point = np.array([0])
    boots = np.arange(1, len(surf.rows))
    notes: list[str] = []

    def solve(limits: _Limits) -> _Solution:
        best = _budget_optimum(surf, point, np.array([budget]), limits)
        if not opts.inference_tokens:
            return best
        return _least_flops(surf, point, best.loss, limits, opts.inference_tokens)

    limits, basis_notes = _limits(surf, opts, solve)
    notes += basis_notes
    constrained = limits.any_cap or bool(opts.inference_tokens)

    best = _budget_optimum(surf, point, np.array([budget]), limits)
    unconstrained = (
        _budget_optimum(surf, point, np.array([budget]), _Limits()) if constrained else None
    )
    bindings: list[str] = []
    if unconstrained is not None:
        if opts.max_params is not None and unconstrained.params[0] > opts.max_params * (1 + 1e-9):
            bindings.append("max_params")
            notes.append(
                f"the parameter cap binds: {opts.max_params:.3g} instead of the optimal "
                f"{unconstrained.params[0]:.3g}, trained on more tokens"
            )
        cap_u = opts.max_unique_tokens
        if cap_u is not None and (
            best.tokens[0] > cap_u * (1 + 1e-9) or unconstrained.tokens[0] > cap_u * (1 + 1e-9)
        ):
            bindings.append("max_unique_tokens")
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
        inf = _least_flops(surf, point, target, limits, opts.inference_tokens)
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
            boot_best = _budget_optimum(surf, boots, np.full(len(boots), budget), limits)
            boot = _least_flops(surf, boots, boot_best.loss, limits, opts.inference_tokens)
            boot_params, boot_tokens, boot_flops = boot.params, boot.tokens, boot.flops
    elif surf.n_boot:
        boot = _budget_optimum(surf, boots, np.full(len(boots), budget), limits)
        boot_params, boot_tokens, boot_flops = boot.params, boot.tokens, boot.flops

    real_shape = None
    if limits.counted is not None:
        real_shape, params, per_token = limits.counted.shape(params)
        if opts.inference_tokens:
            tokens = float(
                _tokens_for_loss(surf, point, np.array([[params]]), best.loss, limits)[0, 0]
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
    notes += _repetition_note(surf, opts, tokens)
    return _finish(
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
    best: _Solution, inference: _Solution, limits: _Limits, inference_tokens: float
) -> float:
    """Fraction of training + inference FLOPs saved against the compute-optimal model."""

    def total(sol: _Solution) -> float:
        per_token = float(limits.flops_per_token(sol.params[:1])[0])
        return float(sol.flops[0]) + _FORWARD_SHARE * per_token * inference_tokens

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
    target = _check_positive(target_loss, "target_loss")
    assert target is not None
    opts = _options(
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
    surf = _surface(fit)
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
    limits, basis_notes = _limits(
        surf, opts, lambda limits: _least_flops(surf, point, np.array([target]), limits, t_inf)
    )
    notes += basis_notes
    best = _least_flops(surf, point, np.array([target]), limits, t_inf)
    if not np.isfinite(best.flops[0]):
        raise PlanError(_unreachable_reason(surf, opts, target), field="target_loss")
    constrained = limits.any_cap or bool(t_inf)
    unconstrained = (
        _least_flops(surf, point, np.array([target]), _Limits()) if constrained else None
    )
    bindings: list[str] = []
    if unconstrained is not None:
        if opts.max_params is not None and unconstrained.params[0] > opts.max_params * (1 + 1e-9):
            bindings.append("max_params")
            notes.append(
                f"the parameter cap binds: {opts.max_params:.3g} instead of "
                f"{unconstrained.params[0]:.3g}; reaching the target takes "
                f"{best.flops[0] / unconstrained.flops[0]:.2f}× the unconstrained compute"
            )
        cap_u = opts.max_unique_tokens
        if cap_u is not None and (
            best.tokens[0] > cap_u * (1 + 1e-9) or unconstrained.tokens[0] > cap_u * (1 + 1e-9)
        ):
            bindings.append("max_unique_tokens")
        if t_inf:
            bindings.append("inference")
    boot_params = boot_tokens = boot_flops = None
    if surf.n_boot:
        boots = np.arange(1, len(surf.rows))
        boot = _least_flops(surf, boots, np.full(len(boots), target), limits, t_inf)
        boot_params, boot_tokens, boot_flops = boot.params, boot.tokens, boot.flops
    params, tokens, flops_spent = float(best.params[0]), float(best.tokens[0]), float(best.flops[0])
    real_shape = None
    if limits.counted is not None:
        real_shape, params, per_token = limits.counted.shape(params)
        tokens = float(
            _tokens_for_loss(surf, point, np.array([[params]]), np.array([target]), limits)[0, 0]
        )
        if not math.isfinite(tokens):
            raise PlanError(
                f"unreachable: the nearest real shape ({params:.4g} parameters) cannot reach "
                f"loss {target:.4g} within the limits",
                field="target_loss",
            )
        flops_spent = per_token * tokens
    notes += _repetition_note(surf, opts, tokens)
    method = (
        "closed-form"
        if surf.chinchilla and not constrained and limits.counted is None
        else "numerical"
    )
    return _finish(
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


def _unreachable_reason(surf: _Surface, opts: _Options, target: float) -> str:
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
    surf_fit = _surface(fit).fit  # load a path once, check the law once
    rows = []
    for budget in budgets:
        row = allocate(surf_fit, float(budget), **options).to_dict()
        row["warnings"] = "; ".join(row["warnings"])
        row["shape"] = None if row["shape"] is None else str(row["shape"])
        rows.append(row)
    return pd.DataFrame(rows)


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
    level = _check_level(level)
    budgets = np.atleast_1d(np.asarray(flops, dtype=float))
    if budgets.ndim != 1 or budgets.size == 0 or not np.all(np.isfinite(budgets) & (budgets > 0)):
        raise PlanError("flops must be finite budgets > 0", field="flops")
    surf_a = _surface(fit_a, need="any")
    surf_b = _surface(fit_b, need="any")
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
        la = _optimal_loss(surf_a, ks_a, np.full(len(ks_a), c))
        cb = _least_flops_any(surf_b, ks_b, la)
        with np.errstate(divide="ignore"):
            k = np.where(np.isfinite(cb), c / cb, 0.0)
        multiplier[j] = k[0]
        loss_a[j] = la[0]
        loss_b[j] = _optimal_loss(surf_b, ks_b[:1], np.array([c]))[0]
        flops_b[j] = cb[0]
        if pairs:
            low[j], high[j] = _interval(k[1:], level)  # type: ignore[misc]
    notes: list[str] = []
    for name, surf in (("A", surf_a), ("B", surf_b)):
        domain = getattr(surf.fit, "domain", None)
        if domain is None:
            notes.append(f"fit {name}: domain unknown; cannot say whether C extrapolates")
            continue
        outside = [c for c in budgets if _decades(float(c), domain.flops) > 0]
        if outside:
            worst = max(_decades(float(c), domain.flops) for c in outside)
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
