"""Fit a scaling law to runs: robust objective, vectorised multi-start, bootstrap, holdout.

The objective is a robust loss of log residuals, summed over runs (Hoffmann et al. 2022, App. D.2;
Besiroglu et al. 2024): Huber with δ = 1e-3 by default, or squared error, or an asymmetric Huber
that fits a lower envelope. With δ = 1e-3 nearly every residual sits in Huber's linear zone, so the
objective is close to a sum of absolute values: flat, kinked, and a trap for optimisers that stop
on a small relative change of the objective.

How the minimum is found
------------------------
1. A grid of thousands of starts anchored on the data (each law's ``default_starts``) is scored in
   one vectorised pass.
2. The best 64 are refined *together* by a batched, damped Newton iteration. Each start first
   tries an exact Newton step (analytic Hessian of the objective; quadratic convergence once the
   residuals inside Huber's quadratic zone settle) and, where that does not lower the objective,
   a Levenberg–Marquardt step on the iteratively reweighted least-squares majoriser of the loss
   (IRLS: at residual r the loss lies under a parabola of curvature ψ(r)/r, for Huber
   min(1, δ/|r|)), which always descends. Each start keeps its own dampings and accepts a step only
   if the objective falls. A start stops when its steps no longer move it (relative step < 1e-10)
   or no damping lowers the objective, never on a small change of the objective alone; a start
   that runs into a better one is stopped there.
3. If the best solution did not converge by that test, it is polished with scipy's L-BFGS-B
   (analytic gradient, gtol 1e-12, ftol 0); the lowest objective wins.
4. Distinct solutions that converged within 0.1% of the best objective are kept; if they disagree
   on the exponents or on the prediction at the user's target, the fit says it is not
   identifiable.

The bootstrap resamples whole runs (rows sharing a ``run_id``) or whole groups; every resample is
a weighted objective (multinomial counts), and all resamples are optimised together, warm-started
from the full-data optimum, in chunks spread over threads (numpy releases the GIL).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalinglab.laws import BaseLaw, LawError, get_law
from scalinglab.runs import Runs, load_runs

__all__ = [
    "LOSSES",
    "PLAUSIBLE_EXPONENTS",
    "BatchResult",
    "Domain",
    "Fit",
    "FitError",
    "FitWarning",
    "Objective",
    "RobustLoss",
    "fit",
    "implausible_exponents",
    "load_fit",
    "make_objective",
    "minimize_batch",
]

FIT_FORMAT = "scalinglab.fit/1"
LOSSES = ("huber", "mse", "asymmetric")
# Relative gap in objective within which two optima count as "near-equal".
_OPTIMA_RTOL = 1e-3
# Near-equal optima whose exponents differ by more than this (relative) or whose predictions at the
# target differ by more than _PREDICTION_RTOL make the fit unidentifiable for the user's purpose.
_EXPONENT_RTOL = 0.02
_PREDICTION_RTOL = 0.005
# A bootstrap CI of a scale parameter spanning more than this factor marks it weakly identified.
_WEAK_FACTOR = 10.0
# Above this many points the multi-start stage runs on a subsample; the winners are then refined on
# every point. Thousands of starts times a million points would not fit in memory.
_SCREEN_POINTS = 4096
# Memory per batched Jacobian chunk: starts × points × params float64 values.
_CHUNK_VALUES = 2_000_000
# Starts per chunk: small enough that a bootstrap spreads over the threads, large enough that the
# per-call overhead of numpy stays small.
_CHUNK_ROWS = 512


class FitError(ValueError):
    """A fit cannot be made: bad options, missing columns, too few runs."""


class FitWarning(UserWarning):
    """A fit was made but deserves caution (not converged, bound hit, not identifiable)."""


# ---------------------------------------------------------------------------------------------
# objective


@dataclass(frozen=True)
class RobustLoss:
    """ρ(r) of a log residual r = log L̂ − log L, with its derivative and IRLS curvature.

    ``huber``: ½r² for |r| ≤ δ, δ(|r| − ½δ) beyond (``scipy.special.huber``).
    ``mse``: r².
    ``asymmetric``: 2·w(r)·huber(r) with w = τ above the data (r > 0) and 1 − τ below, so that
    τ > ½ pushes the law under the data (a lower envelope); τ = ½ is plain Huber.
    """

    kind: str = "huber"
    delta: float = 1e-3
    asymmetry: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise FitError(f"loss must be one of {', '.join(LOSSES)}, got {self.kind!r}")
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise FitError(f"huber_delta must be a finite number > 0, got {self.delta!r}")
        if not 0 < self.asymmetry < 1:
            raise FitError(f"asymmetry must lie in (0, 1), got {self.asymmetry!r}")

    def _side(self, r: np.ndarray) -> np.ndarray:
        return np.where(r > 0, 2.0 * self.asymmetry, 2.0 * (1.0 - self.asymmetry))

    def value(self, r: np.ndarray) -> np.ndarray:
        if self.kind == "mse":
            return r * r
        a = np.abs(r)
        d = self.delta
        h = np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d))
        return h if self.kind == "huber" else self._side(r) * h

    def second(self, r: np.ndarray) -> np.ndarray:
        """ρ''(r) (where it exists; Huber's jump at |r| = δ is taken from inside)."""
        if self.kind == "mse":
            return np.full_like(r, 2.0)
        inside = (np.abs(r) <= self.delta).astype(float)
        return inside if self.kind == "huber" else self._side(r) * inside

    def psi_curvature(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ρ'(r) and the curvature ρ'(r)/r of the tangent parabola that majorises ρ."""
        if self.kind == "mse":
            return 2.0 * r, np.full_like(r, 2.0)
        a = np.abs(r)
        d = self.delta
        inside = a <= d
        psi = np.where(inside, r, d * np.sign(r))
        curv = np.where(inside, 1.0, d / np.maximum(a, d))
        if self.kind == "asymmetric":
            side = self._side(r)
            psi, curv = side * psi, side * curv
        return psi, curv


class Objective:
    """Σᵢ wᵢ ρ(log L̂(xᵢ; θ) − log Lᵢ) for a law on a set of runs, vectorised over θ.

    Other modules reuse it (backtests call it thousands of times): build it once with
    :func:`make_objective`, then evaluate raw parameter rows ``[K, P]``.

    Parameters
    ----------
    law:
        The law form.
    design:
        ``law.design(inputs)`` of the runs.
    log_loss:
        Observed log losses ``[n]``.
    weights:
        Weight per run ``[n]`` (default 1).
    robust:
        The robust loss ρ.
    """

    def __init__(
        self,
        law: BaseLaw,
        design: Mapping[str, np.ndarray],
        log_loss: np.ndarray,
        weights: np.ndarray | None = None,
        robust: RobustLoss | None = None,
    ) -> None:
        self.law = law
        self.design = dict(design)
        self.log_loss = np.asarray(log_loss)
        if self.log_loss.dtype not in (np.float32, np.float64):
            self.log_loss = self.log_loss.astype(float)
        n = self.log_loss.shape[0]
        self.weights = (
            np.ones(n, dtype=self.log_loss.dtype) if weights is None else np.asarray(weights)
        )
        if self.weights.shape != (n,):
            raise FitError(f"weights must have one value per run ({n}), got {self.weights.shape}")
        if np.any(~np.isfinite(self.weights)) or np.any(self.weights < 0):
            raise FitError("weights must be finite and >= 0")
        self.robust = robust or RobustLoss()

    @property
    def n_points(self) -> int:
        return self.log_loss.shape[0]

    def subset(self, index: np.ndarray) -> Objective:
        """The same objective on a subset of the runs."""
        design = {k: v[index] for k, v in self.design.items()}
        return Objective(self.law, design, self.log_loss[index], self.weights[index], self.robust)

    def astype(self, dtype: Any) -> Objective:
        """The same objective computed in another float type (float32 to rank starts fast)."""
        design = {k: v.astype(dtype) for k, v in self.design.items()}
        return Objective(
            self.law, design, self.log_loss.astype(dtype), self.weights.astype(dtype), self.robust
        )

    def _w(self, weights: np.ndarray | None) -> np.ndarray:
        return self.weights[None, :] if weights is None else weights

    def values(self, raw: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Objective at raw rows ``[K, P]`` → ``[K]``; ``weights`` ``[K, n]`` override per row."""
        raw = np.atleast_2d(raw)
        with np.errstate(over="ignore", invalid="ignore"):
            r = self.law.log_predict(raw, self.design) - self.log_loss[None, :]
            out = np.sum(self._w(weights) * self.robust.value(r), axis=1)
        return np.where(np.isfinite(out), out, np.inf)

    def derivatives(
        self, raw: np.ndarray, weights: np.ndarray | None = None, newton: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Objective ``[K]``, gradient ``[K, P]``, the IRLS majoriser's Gauss–Newton Hessian
        ``[K, P, P]`` (positive semi-definite) and, when the law gives second derivatives and
        ``newton`` is set, the exact Hessian ``[K, P, P]`` (else None)."""
        raw = np.atleast_2d(raw)
        with np.errstate(over="ignore", invalid="ignore"):
            logpred, jac = self.law.log_predict_jac(raw, self.design, jac=True)
            assert jac is not None
            r = logpred - self.log_loss[None, :]
            w = np.broadcast_to(self._w(weights), r.shape)
            psi, curv = self.robust.psi_curvature(r)
            f = np.sum(w * self.robust.value(r), axis=1)
            wpsi = w * psi
            grad = np.einsum("kn,kpn->kp", wpsi, jac)
            jt = jac.transpose(0, 2, 1)
            hess = np.matmul(jac * (w * curv)[:, None, :], jt)
            exact = None
            if newton:
                second = self.law.weighted_log_hessian(raw, self.design, wpsi, jac)
                if second is not None:
                    rho2 = w * self.robust.second(r)
                    exact = np.matmul(jac * rho2[:, None, :], jt) + second
        return f, grad, hess, exact

    def raw_value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient at one raw vector (the form scipy.optimize wants)."""
        z = np.asarray(z, dtype=float)[None, :]
        with np.errstate(over="ignore", invalid="ignore"):
            logpred, jac = self.law.log_predict_jac(z, self.design, jac=True)
            assert jac is not None
            r = logpred[0] - self.log_loss
            psi, _ = self.robust.psi_curvature(r)
            f = float(np.sum(self.weights * self.robust.value(r)))
            g = jac[0] @ (self.weights * psi)
        if not np.isfinite(f):
            return float("inf"), np.zeros_like(g)
        return f, g

    def __call__(self, theta: Mapping[str, float]) -> float:
        """Objective at natural parameters ``theta``."""
        return float(self.values(self.law.to_raw(theta)[None, :])[0])


def make_objective(
    law: str | BaseLaw,
    runs: Runs | pd.DataFrame | str | Path,
    *,
    loss: str = "huber",
    huber_delta: float = 1e-3,
    asymmetry: float = 0.9,
    weights: ArrayLike | str | None = None,
    law_options: Mapping[str, Any] | None = None,
) -> Objective:
    """Build the summed robust objective of ``law`` on ``runs`` (see :class:`Objective`).

    ``weights`` is one weight per run, or the name of a column of the runs table.
    """
    law_obj = _as_law(law, law_options)
    table = _as_runs(runs)
    inputs = _law_inputs(law_obj, table)
    design = law_obj.design(inputs)
    robust = RobustLoss(loss, float(huber_delta), float(asymmetry))
    w = _weights(table, weights)
    return Objective(law_obj, design, np.log(table.column("loss")), w, robust)


# ---------------------------------------------------------------------------------------------
# batched optimiser


@dataclass(frozen=True)
class BatchResult:
    """Outcome of :func:`minimize_batch` for K starts."""

    raw: np.ndarray  # [K, P]
    objective: np.ndarray  # [K]
    iterations: np.ndarray  # [K]
    converged: np.ndarray  # [K] bool
    merged: np.ndarray  # [K] bool: stopped early because it ran into a better start


def _solve_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.empty_like(b)
        for i in range(a.shape[0]):
            out[i] = np.linalg.lstsq(a[i], b[i], rcond=None)[0]
        return out


def _damped_step(
    h: np.ndarray, g: np.ndarray, lam: np.ndarray, fixed: np.ndarray, eye: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Solve (H + λ·diag|H|) d = −g with fixed parameters held; return d and whether it is a
    finite descent direction."""
    diag = np.abs(np.diagonal(h, axis1=1, axis2=2))
    floor = 1e-12 * np.max(diag, axis=1, keepdims=True) + 1e-300
    a = h + eye[None] * (lam[:, None] * np.maximum(diag, floor))[:, :, None]
    a = np.where(fixed[:, :, None] | fixed[:, None, :], 0.0, a)
    a[:, eye] = np.where(fixed, 1.0, np.diagonal(a, axis1=1, axis2=2))
    rhs = np.where(fixed, 0.0, -g)
    with np.errstate(over="ignore", invalid="ignore"):
        step = _solve_batch(a, rhs)
        ok = np.all(np.isfinite(step), axis=1) & (np.sum(step * g, axis=1) < 0)
    return np.where(ok[:, None], step, 0.0), ok


def _minimize_chunk(
    objective: Objective,
    starts: np.ndarray,
    bounds: np.ndarray,
    weights: np.ndarray | None,
    max_iter: int,
    xtol: float,
    tick: Callable[[int], None] | None,
    merge_tol: float = 0.0,
) -> BatchResult:
    lo, hi = bounds[:, 0], bounds[:, 1]
    z = np.clip(np.array(starts, dtype=float), lo, hi)
    k, p = z.shape
    f, g, h, hx = objective.derivatives(z, weights)
    newton = hx is not None
    if hx is None:
        hx = h
    lam = np.full(k, 1e-3)  # damping of the IRLS (majoriser) step
    lam_n = np.full(k, 1e-6)  # damping of the exact Newton step
    iters = np.zeros(k, dtype=int)
    converged = np.zeros(k, dtype=bool)
    active = np.isfinite(f)
    merged = np.zeros(k, dtype=bool)
    eye = np.eye(p, dtype=bool)
    for it in range(max_iter):
        if merge_tol > 0 and it % 4 == 3:
            # Starts sharing one objective that have run into a better start will end where it
            # ends: stop spending iterations on them.
            gone = _merge(z, f, active, merge_tol)
            merged[gone] = True
            active[gone] = False
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        zi, gi, fi = z[idx], g[idx], f[idx]
        wi = None if weights is None else weights[idx]
        # Parameters on a bound whose gradient pushes outward are held fixed this step.
        span = 1e-12 * (1.0 + np.abs(zi))
        fixed = ((zi <= lo + span) & (gi > 0)) | ((zi >= hi - span) & (gi < 0))
        trial = zi.copy()
        ft = np.full(idx.size, np.inf)
        if newton:
            # Near the optimum, the exact Newton step converges quadratically where the IRLS
            # majoriser creeps linearly. Where it lowers the objective it is taken; elsewhere
            # (far from the optimum, indefinite Hessian) the majoriser's step is tried instead.
            step_n, ok_n = _damped_step(hx[idx], gi, lam_n[idx], fixed, eye)
            trial_n = np.clip(zi + step_n, lo, hi)
            ft_n = np.full(idx.size, np.inf)
            if ok_n.any():
                ft_n[ok_n] = objective.values(trial_n[ok_n], _rows(wi, ok_n))
            good = ft_n < fi
            trial[good], ft[good] = trial_n[good], ft_n[good]
            lam_n[idx] = np.where(
                good, np.maximum(lam_n[idx] * 0.1, 1e-12), np.minimum(lam_n[idx] * 10, 1e16)
            )
            need = ~good
        else:
            need = np.ones(idx.size, dtype=bool)
        if need.any():
            sub = np.flatnonzero(need)
            step, ok = _damped_step(h[idx[sub]], gi[sub], lam[idx[sub]], fixed[sub], eye)
            trial_i = np.clip(zi[sub] + step, lo, hi)
            ft_i = np.full(sub.size, np.inf)
            if ok.any():
                ft_i[ok] = objective.values(trial_i[ok], _rows(_rows(wi, need), ok))
            better = ft_i < ft[sub]
            trial[sub[better]], ft[sub[better]] = trial_i[better], ft_i[better]
            # Rows whose Newton step failed keep their rejected IRLS step for the test on `moved`.
            trial[sub[~better]] = trial_i[~better]
            gain = ft_i < fi[sub]
            lam[idx[sub]] = np.where(
                gain, np.maximum(lam[idx[sub]] * 0.3, 1e-12), np.minimum(lam[idx[sub]] * 8, 1e16)
            )
        accept = ft < fi
        moved = np.max(np.abs(trial - zi) / (1.0 + np.abs(zi)), axis=1)
        iters[idx] += 1
        # A start has converged when its step no longer moves it, or when no damping finds a
        # lower objective: never merely because the objective changed little.
        stuck = ~accept & (lam[idx] >= 1e12)
        if newton:
            stuck &= lam_n[idx] >= 1e12
        done = (moved <= xtol) | stuck
        acc = idx[accept]
        if acc.size:
            z[acc] = trial[accept]
            fa, ga, ha, hxa = objective.derivatives(
                z[acc], None if weights is None else weights[acc], newton
            )
            f[acc], g[acc], h[acc] = fa, ga, ha
            if hxa is not None:
                hx[acc] = hxa
        newly = idx[done]
        converged[newly] = True
        active[newly] = False
        if tick is not None and newly.size:
            tick(int(newly.size))
    if tick is not None and active.any():
        tick(int(active.sum()))
    return BatchResult(raw=z, objective=f, iterations=iters, converged=converged, merged=merged)


def _rows(weights: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if weights is None else weights[mask]


def _merge(z: np.ndarray, f: np.ndarray, active: np.ndarray, tol: float) -> np.ndarray:
    """Active starts within ``tol`` (relative, raw space) of a start with a lower objective."""
    idx = np.flatnonzero(active)
    if idx.size < 2:
        return np.zeros(0, dtype=int)
    order = idx[np.argsort(f[idx], kind="stable")]
    pts = z[order]
    scale = 1.0 + np.abs(pts)
    gap = np.max(np.abs(pts[:, None, :] - pts[None, :, :]) / scale[:, None, :], axis=2)
    # Row i is dropped if some better-ranked start j < i lies within tol of it.
    close = np.tril(gap <= tol, k=-1)
    return order[close.any(axis=1)]


def minimize_batch(
    objective: Objective,
    starts: np.ndarray,
    *,
    bounds: np.ndarray | None = None,
    weights: np.ndarray | Callable[[slice], np.ndarray] | None = None,
    max_iter: int = 400,
    xtol: float = 1e-10,
    n_jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    merge_tol: float = 0.0,
) -> BatchResult:
    """Minimise ``objective`` from K raw starts at once (batched Levenberg–Marquardt on IRLS).

    Parameters
    ----------
    objective:
        The objective (see :func:`make_objective`).
    starts:
        Raw starting points ``[K, P]``.
    bounds:
        Raw bounds ``[P, 2]`` (default: the law's).
    weights:
        Per-start weights ``[K, n]`` (a bootstrap), or a function giving the rows of a slice of
        starts (so that K × n weights never sit in memory at once), or None for the objective's
        own weights.
    max_iter:
        Iterations per start; a start that reaches it is reported as not converged.
    xtol:
        A start stops when its step moves no parameter by more than ``xtol·(1 + |z|)``.
    n_jobs:
        Threads (default: every core). Results do not depend on it.
    progress:
        Called with the number of starts that just finished.
    merge_tol:
        If > 0, a start that comes within this relative distance of a start with a lower
        objective stops there (``merged``). Only meaningful when all starts share the objective.
    """
    if merge_tol > 0 and weights is not None:
        raise ValueError("merge_tol needs one shared objective: not with per-start weights")
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    if bounds is None:
        bounds = objective.law.raw_bounds()
    k, p = starts.shape
    n = objective.n_points
    # Chunks depend on the problem only, never on the thread count, so that results are
    # bit-identical for any n_jobs (a chunk-wide choice, such as the overflow-safe log-sum-exp,
    # must not depend on which rows share a chunk).
    chunk = max(1, min(k, _CHUNK_ROWS, _CHUNK_VALUES // max(1, n * p)))
    jobs = max(1, n_jobs or os.cpu_count() or 1)
    pieces = [slice(i, min(k, i + chunk)) for i in range(0, k, chunk)]

    def run(s: slice) -> BatchResult:
        w = None if weights is None else weights(s) if callable(weights) else weights[s]
        return _minimize_chunk(objective, starts[s], bounds, w, max_iter, xtol, progress, merge_tol)

    if jobs > 1 and len(pieces) > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(run, pieces))
    else:
        results = [run(s) for s in pieces]
    return BatchResult(
        raw=np.concatenate([r.raw for r in results]),
        objective=np.concatenate([r.objective for r in results]),
        iterations=np.concatenate([r.iterations for r in results]),
        converged=np.concatenate([r.converged for r in results]),
        merged=np.concatenate([r.merged for r in results]),
    )


def _polish(objective: Objective, z0: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, float]:
    """L-BFGS-B with the analytic gradient and tolerances that do not stop on a flat objective."""
    # Imported here: scipy.optimize takes a second to import and most fits never polish.
    from scipy.optimize import minimize

    finite = [(a if np.isfinite(a) else None, b if np.isfinite(b) else None) for a, b in bounds]
    res = minimize(
        objective.raw_value_and_grad,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=finite,
        options={"maxiter": 20_000, "maxfun": 40_000, "ftol": 0.0, "gtol": 1e-12, "maxcor": 30},
    )
    return np.asarray(res.x, dtype=float), float(res.fun)


# ---------------------------------------------------------------------------------------------
# the Fit value


@dataclass(frozen=True)
class Domain:
    """Ranges of the runs a fit was made on, for extrapolation warnings downstream."""

    params: tuple[float, float]
    tokens: tuple[float, float]
    flops: tuple[float, float]
    tokens_per_param: tuple[float, float]

    @classmethod
    def of(cls, runs: Runs) -> Domain:
        fr = runs.frame

        def span(values: ArrayLike) -> tuple[float, float]:
            v = np.asarray(values, dtype=float)
            return (float(v.min()), float(v.max()))

        return cls(
            params=span(fr["params"]),
            tokens=span(fr["tokens"]),
            flops=span(fr["flops"]),
            tokens_per_param=span(fr["tokens"] / fr["params"]),
        )


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if mapping is None else MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=False)
class Fit:
    """A fitted law: parameters, objective, uncertainty, diagnostics. Immutable.

    ``params`` maps the law's parameter names to fitted values (Chinchilla: ``E``, ``A``, ``B``,
    ``alpha``, ``beta``). ``ci`` holds percentile bootstrap intervals for every parameter and for
    derived quantities (``a`` = β/(α+β) for Chinchilla forms). ``bootstrap_params`` has one row
    per resample, columns in the law's ``param_names`` order.
    """

    law: str
    law_options: Mapping[str, Any]
    params: Mapping[str, float]
    objective: float
    loss: str = "huber"
    huber_delta: float = 1e-3
    n_runs: int = 0
    param_basis: str = "unknown"
    domain: Domain | None = None
    ci: Mapping[str, tuple[float, float]] | None = None
    ci_level: float = 0.95
    bootstrap_params: np.ndarray | None = None
    optima: tuple[Mapping[str, float], ...] = ()
    warnings: tuple[str, ...] = ()
    holdout: Mapping[str, Any] | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    # The verdict: False with reasons when an exponent is implausible or pinned on a bound, or
    # near-optimal solutions disagree (scalinglab.backtest adds extrapolation checks).
    reliable: bool = True
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "law_options", MappingProxyType(dict(self.law_options)))
        set_(self, "params", MappingProxyType({k: float(v) for k, v in self.params.items()}))
        if self.ci is not None:
            ci = {k: (float(a), float(b)) for k, (a, b) in self.ci.items()}
            set_(self, "ci", MappingProxyType(ci))
        if self.bootstrap_params is not None:
            arr = np.array(self.bootstrap_params, dtype=float)
            arr.setflags(write=False)
            set_(self, "bootstrap_params", arr)
        set_(self, "optima", tuple(MappingProxyType(dict(o)) for o in self.optima))
        set_(self, "warnings", tuple(self.warnings))
        set_(self, "holdout", _frozen(self.holdout))
        set_(self, "diagnostics", MappingProxyType(dict(self.diagnostics)))
        set_(self, "reliable", bool(self.reliable))
        set_(self, "reasons", tuple(str(r) for r in self.reasons))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fit) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    # -- the law ---------------------------------------------------------------------------------

    @property
    def law_object(self) -> BaseLaw:
        """The law form, rebuilt from ``law`` and ``law_options``."""
        return get_law(self.law, **self.law_options)

    @property
    def derived(self) -> dict[str, float]:
        """Quantities derived from the parameters (``a`` = β/(α+β) for Chinchilla forms)."""
        return self.law_object.derived(self.params)

    def predict(self, **inputs: ArrayLike) -> float | np.ndarray:
        """Predicted loss, e.g. ``fit.predict(params=7e10, tokens=1.4e12)``.

        Scalars give a float, arrays an array (inputs broadcast together). Any two of ``params``,
        ``tokens``, ``flops`` stand for the third through C = 6·N·D.
        """
        out = self.law_object.predict(self.params, **inputs)
        return float(out) if out.ndim == 0 else out

    def prediction_interval(
        self, level: float = 0.9, **inputs: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the prediction over the bootstrap resamples.

        Raises
        ------
        ValueError
            The fit has no bootstrap (fit again with ``bootstrap=K``).
        """
        if self.bootstrap_params is None or len(self.bootstrap_params) == 0:
            raise ValueError("this fit has no bootstrap: fit again with bootstrap=K for intervals")
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level!r}")
        law = self.law_object
        x = law.prepare_inputs(inputs)
        shape = next(iter(x.values())).shape
        design = law.design({k: v.reshape(-1) for k, v in x.items()})
        raw = law.raw_array(self.bootstrap_params)
        preds = np.exp(law.log_predict(raw, design))
        lo, hi = np.percentile(preds, [50 * (1 - level), 50 * (1 + level)], axis=0)
        return lo.reshape(shape), hi.reshape(shape)

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self, *, include_bootstrap: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (``include_bootstrap=False`` leaves out the resampled parameters)."""
        d: dict[str, Any] = {
            "format": FIT_FORMAT,
            "law": self.law,
            "law_options": dict(self.law_options),
            "params": dict(self.params),
            "derived": self.derived,
            "objective": self.objective,
            "loss": self.loss,
            "huber_delta": self.huber_delta,
            "n_runs": self.n_runs,
            "param_basis": self.param_basis,
            "domain": None if self.domain is None else _domain_dict(self.domain),
            "ci": None if self.ci is None else {k: list(v) for k, v in self.ci.items()},
            "ci_level": self.ci_level,
            "optima": [dict(o) for o in self.optima],
            "warnings": list(self.warnings),
            "holdout": None if self.holdout is None else _plain(self.holdout),
            "diagnostics": _plain(self.diagnostics),
            "reliable": self.reliable,
            "reasons": list(self.reasons),
        }
        if include_bootstrap:
            d["bootstrap_params"] = (
                None if self.bootstrap_params is None else self.bootstrap_params.tolist()
            )
        return d

    def to_json(self) -> str:
        """The fit as strict JSON (non-finite numbers become null)."""
        return json.dumps(_plain(self.to_dict()), indent=2, allow_nan=False)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, text: str) -> Fit:
        """Read a fit written by :meth:`to_json`."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FitError(f"not a fit file: invalid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(d, dict) or d.get("format") != FIT_FORMAT or "law" not in d:
            raise FitError(f"not a fit file: expected a JSON object with format {FIT_FORMAT!r}")
        domain = d.get("domain")
        ci = d.get("ci")
        return cls(
            law=d["law"],
            law_options=d.get("law_options") or {},
            params={k: _num(v) for k, v in d["params"].items()},
            objective=_num(d.get("objective")),
            loss=d.get("loss", "huber"),
            huber_delta=float(d.get("huber_delta", 1e-3)),
            n_runs=int(d.get("n_runs", 0)),
            param_basis=d.get("param_basis", "unknown"),
            domain=None if domain is None else Domain(**{k: tuple(v) for k, v in domain.items()}),
            ci=None if ci is None else {k: tuple(map(_num, v)) for k, v in ci.items()},
            ci_level=float(d.get("ci_level", 0.95)),
            bootstrap_params=None
            if d.get("bootstrap_params") is None
            else np.array(d["bootstrap_params"], dtype=float).reshape(-1, len(d["params"])),
            optima=tuple({k: _num(v) for k, v in o.items()} for o in d.get("optima", [])),
            warnings=tuple(d.get("warnings", [])),
            holdout=d.get("holdout"),
            diagnostics=d.get("diagnostics") or {},
            reliable=bool(d.get("reliable", True)),
            reasons=tuple(d.get("reasons", [])),
        )

    @classmethod
    def from_params(cls, law: str, params: Mapping[str, float], **fields: Any) -> Fit:
        """A fit from published values, with no data behind it (objective NaN, no CI).

        ``fields`` set any other field, e.g. ``law_options={"x": "flops"}``,
        ``param_basis="total"``.
        """
        options = dict(fields.pop("law_options", {}) or {})
        law_obj = get_law(law, **options)
        law_obj.to_raw(params)  # names present and positive where they must be
        extra = set(params) - set(law_obj.param_names)
        if extra:
            raise LawError(
                f"law {law!r} has no parameters {', '.join(sorted(extra))}; its parameters are "
                f"{', '.join(law_obj.param_names)}"
            )
        fields.setdefault("objective", float("nan"))
        return cls(law=law_obj.name, law_options=law_obj.options, params=dict(params), **fields)


def load_fit(path: str | Path) -> Fit:
    """Read a fit saved by :meth:`Fit.save` (or ``scalinglab fit --out``)."""
    p = Path(path)
    if not p.exists():
        raise FitError(f"{p}: no such fit file")
    return Fit.from_json(p.read_text(encoding="utf-8"))


def _domain_dict(domain: Domain) -> dict[str, list[float]]:
    return {
        "params": list(domain.params),
        "tokens": list(domain.tokens),
        "flops": list(domain.flops),
        "tokens_per_param": list(domain.tokens_per_param),
    }


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# fitting


def _as_law(law: str | BaseLaw, options: Mapping[str, Any] | None) -> BaseLaw:
    if isinstance(law, BaseLaw):
        if options:
            raise FitError("law_options apply to a law name, not to a law object")
        return law
    try:
        return get_law(law, **(options or {}))
    except LawError as exc:
        raise FitError(str(exc)) from None


def _as_runs(runs: Runs | pd.DataFrame | str | Path) -> Runs:
    if isinstance(runs, Runs):
        return runs
    return load_runs(runs)


def _law_inputs(law: BaseLaw, runs: Runs) -> dict[str, np.ndarray]:
    missing = [c for c in law.inputs if c not in runs.frame.columns]
    if missing:
        raise FitError(
            f"law {law.name!r} needs the column(s) {', '.join(missing)}, which the runs table "
            f"({runs.source}) lacks"
        )
    return {c: runs.column(c).astype(float) for c in law.inputs}


def _weights(runs: Runs, weights: ArrayLike | str | None) -> np.ndarray | None:
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights not in runs.frame.columns:
            raise FitError(f"weights column {weights!r} is not in the runs table")
        weights = runs.frame[weights].to_numpy(dtype=float)
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(runs),):
        raise FitError(f"weights must have one value per run ({len(runs)}), got shape {w.shape}")
    if np.any(~np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise FitError("weights must be finite, >= 0, and not all 0")
    return w


def _starts(law: BaseLaw, objective: Objective, starts: Any) -> np.ndarray:
    if starts is None:
        return law.default_starts(objective.design, objective.log_loss)
    if isinstance(starts, Mapping):
        unknown = set(starts) - set(law.param_names)
        missing = set(law.param_names) - set(starts)
        if unknown or missing:
            raise FitError(
                f"starts must give values for each of {', '.join(law.param_names)}"
                + (f"; unknown {', '.join(sorted(unknown))}" if unknown else "")
                + (f"; missing {', '.join(sorted(missing))}" if missing else "")
            )
        axes = [np.atleast_1d(np.asarray(starts[p], dtype=float)) for p in law.param_names]
        mesh = np.meshgrid(*axes, indexing="ij")
        natural = np.stack([m.reshape(-1) for m in mesh], axis=1)
    else:
        natural = np.atleast_2d(np.asarray(starts, dtype=float))
        if natural.shape[1] != law.n_params:
            raise FitError(
                f"starts must have {law.n_params} columns ({', '.join(law.param_names)}), "
                f"got {natural.shape[1]}"
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = law.raw_array(natural)
    if not np.all(np.isfinite(raw)):
        raise FitError("starts must be finite, with scale parameters (E, A, B, ...) > 0")
    return raw


def _distinct(raw: np.ndarray, f: np.ndarray, limit: int, tol: float = 1e-3) -> np.ndarray:
    """Indices of up to ``limit`` solutions, best first, no two within ``tol`` in raw space."""
    order = np.argsort(f, kind="stable")
    kept: list[int] = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        scale = 1.0 + np.abs(raw[i])
        if all(np.max(np.abs(raw[i] - raw[j]) / scale) > tol for j in kept):
            kept.append(int(i))
            if len(kept) >= limit:
                break
    return np.array(kept, dtype=int)


@dataclass(frozen=True)
class _Solved:
    raw: np.ndarray
    objective: float
    candidates_raw: np.ndarray
    candidates_f: np.ndarray
    candidates_converged: np.ndarray  # stopped at a stationary point (not merged, not capped)
    info: dict[str, Any]


def _solve(
    objective: Objective,
    starts: np.ndarray,
    bounds: np.ndarray,
    *,
    refine: int,
    polish: int | None,
    max_iter: int,
    n_jobs: int | None,
    seed: int,
) -> _Solved:
    t0 = time.perf_counter()
    screen_obj = objective
    n = objective.n_points
    if n > _SCREEN_POINTS:
        rng = np.random.default_rng(seed)
        screen_obj = objective.subset(np.sort(rng.choice(n, _SCREEN_POINTS, replace=False)))
    starts = np.clip(starts, bounds[:, 0], bounds[:, 1])
    # Scores only rank the starts: single precision does that, and its exp is 5× faster here.
    ranker = screen_obj.astype(np.float32)
    step = max(1, _CHUNK_VALUES // screen_obj.n_points)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        scores = np.concatenate(
            [
                ranker.values(starts[i : i + step].astype(np.float32))
                for i in range(0, len(starts), step)
            ]
        )
    chosen = np.argsort(scores, kind="stable")[: max(1, refine)]
    batch = minimize_batch(
        screen_obj,
        starts[chosen],
        bounds=bounds,
        max_iter=max_iter,
        n_jobs=n_jobs,
        merge_tol=1e-3,
    )
    cand_raw, cand_f = batch.raw, batch.objective
    if screen_obj is not objective:
        # The subsample picked the basins; the distinct ones within 1% of the best are finished
        # on every point (each full-data iteration costs what the whole subsample stage did).
        near = np.flatnonzero(cand_f <= cand_f.min() * 1.01 + 1e-300)
        top = near[_distinct(cand_raw[near], cand_f[near], 3, tol=1e-2)]
        batch = minimize_batch(
            objective, cand_raw[top], bounds=bounds, max_iter=max_iter, n_jobs=n_jobs
        )
        cand_raw, cand_f = batch.raw, batch.objective
    if polish is None:
        # The batched Newton/IRLS iteration stops only when its steps no longer move; L-BFGS-B
        # is a second opinion worth its time only where that did not happen.
        polish = 0 if batch.converged[int(np.argmin(batch.objective))] else 1
    best_idx = _distinct(cand_raw, cand_f, polish) if polish else np.zeros(0, dtype=int)
    polished_raw, polished_f = [], []
    for i in best_idx:
        z, fz = _polish(objective, cand_raw[i], bounds)
        if fz < cand_f[i]:
            polished_raw.append(z)
            polished_f.append(fz)
    cand_ok = batch.converged.copy()
    if polished_raw:
        cand_raw = np.concatenate([cand_raw, np.array(polished_raw)])
        cand_f = np.concatenate([cand_f, np.array(polished_f)])
        cand_ok = np.concatenate([cand_ok, np.ones(len(polished_raw), dtype=bool)])
    best = int(np.argmin(cand_f))
    info = {
        "n_starts": len(starts),
        "n_refined": len(chosen),
        "screen_points": screen_obj.n_points,
        "iterations_max": int(batch.iterations.max()),
        "converged": int(batch.converged.sum()),
        "merged": int(batch.merged.sum()),
        "polished": len(best_idx),
        "polished_improvement": float(max(0.0, min(batch.objective) - cand_f[best])),
        "seconds": time.perf_counter() - t0,
    }
    return _Solved(cand_raw[best], float(cand_f[best]), cand_raw, cand_f, cand_ok, info)


def _holdout_split(
    runs: Runs, above: float | None, top: float | None
) -> tuple[Runs, Runs | None, float | None, np.ndarray | None]:
    if above is None and top is None:
        return runs, None, None, None
    if above is not None and top is not None:
        raise FitError("give holdout_above or holdout_top, not both")
    flops = runs.column("flops")
    if above is not None:
        if not (math.isfinite(above) and above > 0):
            raise FitError(f"holdout_above must be a FLOP count > 0, got {above!r}")
        threshold = float(above)
    else:
        assert top is not None
        if not 0 < top < 1:
            raise FitError(f"holdout_top must be a fraction in (0, 1), got {top!r}")
        k = max(1, math.ceil(top * len(runs)))
        threshold = float(np.sort(flops)[::-1][k - 1]) * (1 - 1e-12)
    held = flops > threshold
    if not held.any():
        raise FitError(
            f"no run above {threshold:.3g} FLOP to hold out (largest: {flops.max():.3g} FLOP)"
        )
    if held.all():
        raise FitError(
            f"every run is above {threshold:.3g} FLOP: nothing left to fit on (smallest: "
            f"{flops.min():.3g} FLOP)"
        )
    train = runs.subset(~held, f"fitted on the runs with flops <= {threshold:.3g}")
    test = runs.subset(held, f"held out: runs with flops > {threshold:.3g}")
    return train, test, threshold, ~held


def _holdout_report(
    law: BaseLaw,
    params: Mapping[str, float],
    test: Runs,
    threshold: float,
    n_train: int,
    boot: np.ndarray | None,
    level: float,
) -> dict[str, Any]:
    inputs = {c: test.column(c) for c in law.inputs}
    pred = law.predict(params, **inputs)
    obs = test.column("loss")
    rel = pred / obs - 1.0
    report: dict[str, Any] = {
        "threshold_flops": threshold,
        "n_train": n_train,
        "n_holdout": len(test),
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "mean_rel_error": float(np.mean(rel)),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
    }
    rows = []
    lo = hi = None
    if boot is not None and len(boot):
        design = law.design(law.prepare_inputs(inputs))
        preds = np.exp(law.log_predict(law.raw_array(boot), design))
        lo, hi = np.percentile(preds, [50 * (1 - level), 50 * (1 + level)], axis=0)
        report["coverage"] = float(np.mean((obs >= lo) & (obs <= hi)))
    for i in range(len(test)):
        row = {
            "params": float(test.frame["params"].iloc[i]),
            "tokens": float(test.frame["tokens"].iloc[i]),
            "flops": float(test.frame["flops"].iloc[i]),
            "loss": float(obs[i]),
            "predicted": float(pred[i]),
            "rel_error": float(rel[i]),
        }
        if lo is not None and hi is not None:
            row["interval"] = [float(lo[i]), float(hi[i])]
        rows.append(row)
    report["runs"] = rows
    return report


def _bootstrap(
    objective: Objective,
    runs: Runs,
    z_best: np.ndarray,
    bounds: np.ndarray,
    k: int,
    *,
    by: str,
    seed: int,
    max_iter: int,
    n_jobs: int | None,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, int]:
    clusters = runs.cluster_ids(by)
    n_clusters = int(clusters.max()) + 1
    if n_clusters < 2:
        raise FitError(f"cannot bootstrap by {by}: the runs form a single {by}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=k)
    base = objective.weights[None, :]

    def weights(rows: slice) -> np.ndarray:
        return counts[rows][:, clusters].astype(float) * base

    starts = np.repeat(z_best[None, :], k, axis=0)
    batch = minimize_batch(
        objective,
        starts,
        bounds=bounds,
        weights=weights,
        max_iter=max_iter,
        n_jobs=n_jobs,
        progress=progress,
    )
    return batch.raw, int((~batch.converged).sum())


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
        A registry name (``"chinchilla"``, ``"kaplan-nd"``, ``"power"``, ``"data-constrained"``)
        or a law object from :func:`scalinglab.get_law`.
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
        Unknown law or loss, missing columns, too few runs, bad holdout or bootstrap options.
    """
    t_start = time.perf_counter()
    law_obj = _as_law(law, law_options)
    all_runs = _as_runs(runs)
    if not (isinstance(bootstrap, int | np.integer) and bootstrap >= 0):
        raise FitError(f"bootstrap must be a whole number >= 0, got {bootstrap!r}")
    if not 0 < ci_level < 1:
        raise FitError(f"ci_level must lie in (0, 1), got {ci_level!r}")
    train, test, threshold, train_mask = _holdout_split(all_runs, holdout_above, holdout_top)
    if len(train) <= law_obj.n_params:
        raise FitError(
            f"law {law_obj.name!r} has {law_obj.n_params} parameters; fitting it needs more than "
            f"{law_obj.n_params} runs, got {len(train)}"
        )
    objective = make_objective(
        law_obj,
        train,
        loss=loss,
        huber_delta=huber_delta,
        asymmetry=asymmetry,
        weights=_weights_for(all_runs, train_mask, weights),
    )
    raw_bounds = law_obj.raw_bounds(bounds)
    grid = _starts(law_obj, objective, starts)

    solved = _solve(
        objective,
        grid,
        raw_bounds,
        refine=refine,
        polish=polish,
        max_iter=max_iter,
        n_jobs=n_jobs,
        seed=seed,
    )
    z = solved.raw
    params = law_obj.from_raw(z)
    notes: list[str] = []

    # -- diagnostics at the optimum --------------------------------------------------------------
    f_best, g_best = objective.raw_value_and_grad(z)
    span = 1e-9 * (1.0 + np.abs(z))
    at_lo = z <= raw_bounds[:, 0] + span
    at_hi = z >= raw_bounds[:, 1] - span
    g_free = np.where((at_lo & (g_best > 0)) | (at_hi & (g_best < 0)), 0.0, g_best)
    # Gradient relative to the objective's size, per unit change of each raw parameter.
    grad_rel = float(np.max(np.abs(g_free)) / max(f_best, 1e-300))
    for i, name in enumerate(law_obj.param_names):
        if at_lo[i] or at_hi[i]:
            side = "lower" if at_lo[i] else "upper"
            notes.append(
                f"{name} = {params[name]:.4g} sits on its {side} bound; the data do not "
                f"determine it within the bounds"
            )
    if grad_rel > 1e-4:
        notes.append(
            f"the optimiser may not have converged: relative gradient {grad_rel:.2g} at the best "
            "solution"
        )

    optima, ident = _optima(law_obj, solved, target)
    notes.extend(ident)
    if "group" in train.frame and train.frame["group"].nunique() > 1:
        notes.append(
            f"the runs hold {train.frame['group'].nunique()} groups (recipes or data sets): one "
            "law was fitted to all of them; select a group to fit it alone"
        )

    # -- bootstrap -------------------------------------------------------------------------------
    ci = None
    boot_natural = None
    boot_failed = 0
    if bootstrap:
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress("bootstrap", min(done[0], bootstrap), bootstrap)

        boot_raw, boot_failed = _bootstrap(
            objective,
            train,
            z,
            raw_bounds,
            int(bootstrap),
            by=bootstrap_by,
            seed=seed,
            max_iter=max_iter,
            n_jobs=n_jobs,
            progress=tick,
        )
        boot_natural = law_obj.natural_array(boot_raw)
        if bootstrap_by == "run" and "step" in train.frame and "run_id" not in train.frame:
            notes.append(
                "the runs have a step column but no run_id: each checkpoint was resampled on its "
                "own; give run_id so that the checkpoints of one run are resampled together"
            )
        ci = _percentile_ci(law_obj, boot_natural, ci_level)
        if boot_failed > 0.01 * bootstrap:
            notes.append(
                f"{boot_failed} of {bootstrap} bootstrap refits did not converge within "
                f"{max_iter} iterations"
            )
        for name in law_obj.param_names:
            lo, hi = ci[name]
            if name in law_obj.log_params and lo > 0 and hi / lo > _WEAK_FACTOR:
                notes.append(
                    f"{name} is weakly identified: its {ci_level:.0%} CI spans a factor "
                    f"{hi / lo:.3g} ({lo:.4g} to {hi:.4g})"
                )

    holdout = None
    if test is not None and threshold is not None:
        holdout = _holdout_report(
            law_obj, params, test, threshold, len(train), boot_natural, ci_level
        )

    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=2)

    diagnostics = {
        **solved.info,
        "relative_gradient": grad_rel,
        "n_points": len(train),
        "bootstrap": int(bootstrap),
        "bootstrap_by": bootstrap_by if bootstrap else None,
        "bootstrap_not_converged": boot_failed,
        "seed": seed,
        "runs_notes": list(train.notes),
        "seconds_total": time.perf_counter() - t_start,
    }
    if loss == "asymmetric":
        diagnostics["asymmetry"] = asymmetry
    n_runs = int(train.cluster_ids("run").max()) + 1
    verdict = _verdict(law_obj, params, at_lo | at_hi, ident)
    return Fit(
        law=law_obj.name,
        law_options=law_obj.options,
        params=params,
        objective=float(f_best),
        loss=loss,
        huber_delta=float(huber_delta),
        n_runs=n_runs,
        param_basis=train.param_basis,
        domain=Domain.of(train),
        ci=ci,
        ci_level=ci_level,
        bootstrap_params=boot_natural,
        optima=optima,
        warnings=tuple(notes),
        holdout=holdout,
        diagnostics=diagnostics,
        reliable=not verdict,
        reasons=tuple(verdict),
    )


# Exponents of language-model scaling laws on record lie well inside these ranges: Chinchilla's
# alpha = 0.34, beta = 0.28 (Hoffmann et al. 2022), Besiroglu et al.'s 0.35 and 0.37, Kaplan et
# al.'s alpha_N = 0.076, alpha_D = 0.095 (2020). Outside them, the fit describes the optimiser.
PLAUSIBLE_EXPONENTS: Mapping[str, Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "chinchilla": {"alpha": (0.05, 1.0), "beta": (0.05, 1.0)},
        "kaplan-nd": {"alpha_N": (0.01, 1.0), "alpha_D": (0.01, 1.0)},
        "power": {"alpha": (0.01, 1.0)},
        "data-constrained": {"alpha": (0.05, 1.0), "beta": (0.05, 1.0)},
    }
)


def implausible_exponents(law: str, params: Mapping[str, float]) -> list[str]:
    """One reason per exponent of ``params`` outside :data:`PLAUSIBLE_EXPONENTS`."""
    out = []
    for name, (lo, hi) in PLAUSIBLE_EXPONENTS.get(law, {}).items():
        v = params.get(name)
        if v is not None and math.isfinite(v) and not lo <= v <= hi:
            out.append(
                f"implausible exponent {name} = {v:.3g} (language-model fits on record lie in "
                f"[{lo:g}, {hi:g}])"
            )
    return out


def _verdict(
    law: BaseLaw, params: Mapping[str, float], on_bound: np.ndarray, ident: Sequence[str]
) -> list[str]:
    reasons = implausible_exponents(law.name, params)
    for i, name in enumerate(law.param_names):
        if on_bound[i] and name not in law.log_params:
            reasons.append(f"exponent {name} = {params[name]:.4g} sits on a bound of the fit")
    return reasons + list(ident)


def _weights_for(all_runs: Runs, train_mask: np.ndarray | None, weights: Any) -> Any:
    """Per-run weights restricted to the training runs (a column name needs no restriction)."""
    if weights is None or isinstance(weights, str) or train_mask is None:
        return weights
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(all_runs),):
        raise FitError(f"weights must have one value per run ({len(all_runs)}), got {w.shape}")
    return w[train_mask]


def _percentile_ci(
    law: BaseLaw, natural: np.ndarray, level: float
) -> dict[str, tuple[float, float]]:
    q = [50 * (1 - level), 50 * (1 + level)]
    ci: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(law.param_names):
        lo, hi = np.nanpercentile(natural[:, i], q)
        ci[name] = (float(lo), float(hi))
    for name, values in law.derived_array(natural).items():
        lo, hi = np.nanpercentile(values, q)
        ci[name] = (float(lo), float(hi))
    return ci


def _optima(
    law: BaseLaw, solved: _Solved, target: Mapping[str, float] | None
) -> tuple[tuple[dict[str, float], ...], list[str]]:
    f_best = solved.objective
    near = solved.candidates_f <= f_best + _OPTIMA_RTOL * max(abs(f_best), 1e-300)
    # Only solutions the optimiser finished count: a start stopped because it ran into a better
    # one, or capped by max_iter, is on its way somewhere, not an optimum of its own.
    best = int(np.argmin(solved.candidates_f))
    finished = solved.candidates_converged.copy()
    finished[best] = True
    idx = np.flatnonzero(near & finished)
    keep = idx[_distinct(solved.candidates_raw[idx], solved.candidates_f[idx], 10, tol=1e-2)]
    # The best solution first, then the others by objective.
    order = np.argsort(solved.candidates_f[keep], kind="stable")
    keep = keep[order]
    optima = []
    for i in keep:
        d = law.from_raw(solved.candidates_raw[i])
        d["objective"] = float(solved.candidates_f[i])
        optima.append(d)
    notes: list[str] = []
    if len(keep) < 2:
        return tuple(optima), notes
    natural = law.natural_array(solved.candidates_raw[keep])
    exps = [i for i, p in enumerate(law.param_names) if p not in law.log_params]
    spread = []
    for i in exps:
        v = natural[:, i]
        rel = (v.max() - v.min()) / max(abs(v[0]), 1e-12)
        if rel > _EXPONENT_RTOL:
            spread.append(f"{law.param_names[i]} from {v.min():.4g} to {v.max():.4g}")
    if spread:
        notes.append(
            f"not identifiable: {len(keep)} optima within {_OPTIMA_RTOL:.1%} of the best "
            f"objective disagree on exponents ({'; '.join(spread)})"
        )
    if target:
        x = law.prepare_inputs(target)
        design = law.design({k: v.reshape(-1) for k, v in x.items()})
        preds = np.exp(law.log_predict(solved.candidates_raw[keep], design))
        rel = (preds.max(axis=0) - preds.min(axis=0)) / preds[0]
        if np.max(rel) > _PREDICTION_RTOL:
            notes.append(
                f"not identifiable at the target: near-equal optima predict losses "
                f"{preds.min():.4g} to {preds.max():.4g} there ({np.max(rel):.1%} apart)"
            )
    return tuple(optima), notes


def refit(fit_: Fit, runs: Runs | pd.DataFrame | str | Path, **kwargs: Any) -> Fit:
    """Fit the same law with the same options to other runs (kwargs override)."""
    options = {"loss": fit_.loss, "huber_delta": fit_.huber_delta, **kwargs}
    return fit(fit_.law, runs, law_options=dict(fit_.law_options), **options)
