"""Finding the minimum of an objective: batched Newton/Levenberg–Marquardt from many starts.

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

The same batched iteration optimises every bootstrap resample at once (per-start weights, see
:mod:`scalinglab.fitting.uncertainty`), in chunks spread over threads (numpy releases the GIL).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalinglab.fitting.errors import FitError
from scalinglab.fitting.objective import Objective
from scalinglab.laws import BaseLaw

__all__ = [
    "BatchResult",
    "Solved",
    "distinct",
    "lbfgs_polish",
    "minimize_batch",
    "solve",
    "start_grid",
]

# Above this many points the multi-start stage runs on a subsample; the winners are then refined on
# every point. Thousands of starts times a million points would not fit in memory.
_SCREEN_POINTS = 4096
# Memory per batched Jacobian chunk: starts × points × params float64 values.
_CHUNK_VALUES = 2_000_000
# Starts per chunk: small enough that a bootstrap spreads over the threads, large enough that the
# per-call overhead of numpy stays small.
_CHUNK_ROWS = 512


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
        raise FitError(
            "merge_tol needs one shared objective: not with per-start weights", field="merge_tol"
        )
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


def lbfgs_polish(
    objective: Objective, z0: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, float]:
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


def start_grid(law: BaseLaw, objective: Objective, starts: Any) -> np.ndarray:
    """Raw starting points ``[K, P]``: the law's grid anchored on the data, or the user's
    ``starts`` (a mapping name → values, whose grid is taken, or natural rows ``[K, P]``)."""
    if starts is None:
        return law.default_starts(objective.design, objective.log_loss)
    if isinstance(starts, Mapping):
        unknown = set(starts) - set(law.param_names)
        missing = set(law.param_names) - set(starts)
        if unknown or missing:
            raise FitError(
                f"starts must give values for each of {', '.join(law.param_names)}"
                + (f"; unknown {', '.join(sorted(unknown))}" if unknown else "")
                + (f"; missing {', '.join(sorted(missing))}" if missing else ""),
                field="starts",
            )
        axes = [np.atleast_1d(np.asarray(starts[p], dtype=float)) for p in law.param_names]
        mesh = np.meshgrid(*axes, indexing="ij")
        natural = np.stack([m.reshape(-1) for m in mesh], axis=1)
    else:
        natural = np.atleast_2d(np.asarray(starts, dtype=float))
        if natural.shape[1] != law.n_params:
            raise FitError(
                f"starts must have {law.n_params} columns ({', '.join(law.param_names)}), "
                f"got {natural.shape[1]}",
                field="starts",
            )
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = law.raw_array(natural)
    if not np.all(np.isfinite(raw)):
        raise FitError(
            "starts must be finite, with scale parameters (E, A, B, ...) > 0", field="starts"
        )
    return raw


def distinct(raw: np.ndarray, f: np.ndarray, limit: int, tol: float = 1e-3) -> np.ndarray:
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
class Solved:
    """The multi-start search's best solution and the candidates it finished with."""

    raw: np.ndarray
    objective: float
    candidates_raw: np.ndarray
    candidates_f: np.ndarray
    candidates_converged: np.ndarray  # stopped at a stationary point (not merged, not capped)
    info: dict[str, Any]


def solve(
    objective: Objective,
    starts: np.ndarray,
    bounds: np.ndarray,
    *,
    refine: int,
    polish: int | None,
    max_iter: int,
    n_jobs: int | None,
    seed: int,
) -> Solved:
    """Screen ``starts`` in one vectorised pass, refine the best ``refine`` together, and polish
    with L-BFGS-B where that did not converge (``polish``: how many distinct solutions; None:
    one, only if needed)."""
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
        top = near[distinct(cand_raw[near], cand_f[near], 3, tol=1e-2)]
        batch = minimize_batch(
            objective, cand_raw[top], bounds=bounds, max_iter=max_iter, n_jobs=n_jobs
        )
        cand_raw, cand_f = batch.raw, batch.objective
    if polish is None:
        # The batched Newton/IRLS iteration stops only when its steps no longer move; L-BFGS-B
        # is a second opinion worth its time only where that did not happen.
        polish = 0 if batch.converged[int(np.argmin(batch.objective))] else 1
    best_idx = distinct(cand_raw, cand_f, polish) if polish else np.zeros(0, dtype=int)
    polished_raw, polished_f = [], []
    for i in best_idx:
        z, fz = lbfgs_polish(objective, cand_raw[i], bounds)
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
    return Solved(cand_raw[best], float(cand_f[best]), cand_raw, cand_f, cand_ok, info)
