"""Plans you can trust: which fit splits a budget between N and D, and how well plans held up.

A procedure is chosen for how well it predicts *loss*, but a plan uses the fit to split a budget
between parameters N and tokens D, and the two can disagree: a fit of the compute-optimal
frontier alone predicts loss along it and cannot tell N from D. This module decides which fit
plans, says why, and backtests plans.

Identification (:func:`check_allocation`)
    A fit identifies the allocation unless its law lacks N or D, an exponent is implausible or on
    a bound, its 90% bootstrap interval of a (N_opt ∝ C^a) is wider than
    :data:`~scalinglab.fitting.allocation.MAX_A_WIDTH`, or its trusted runs are the frontier
    alone (N follows compute to within :data:`MIN_SIZE_SPREAD_DECADES`).
The planner (:func:`choose_planner`)
    Where the fitted runs hold IsoFLOP profiles (:data:`MIN_PROFILES` or more), the identifying
    fit whose N_opt lies closest to the profile minima measured in those runs (Approach 2 of
    Hoffmann et al. 2022) plans: a measurement made without any law, on the user's own runs.
    Without profiles, the first identifying fit in the procedure's own order plans. A procedure
    may plan from its members, from the recipes it names as ``planners`` (fitted only to plan) and,
    for ``auto``, from any of its candidates.
    When none identifies, there is no planner and planning refuses with the reasons.
The allocation backtest
    In :mod:`~scalinglab.procedures.allocation_backtest`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.approaches import ApproachError, isoflop_points
from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.fitting import Fit, FitError, FitWarning
from scalinglab.fitting.allocation import A_LEVEL, allocation_exponent, allocation_reasons
from scalinglab.procedures.errors import ProcedureError
from scalinglab.procedures.recipes import fit_recipe, trust_mask
from scalinglab.procedures.registry import Procedure, get_procedure
from scalinglab.runs import Runs

__all__ = [
    "MIN_PROFILES",
    "MIN_SIZE_SPREAD_DECADES",
    "AllocationCheck",
    "AllocationError",
    "Planner",
    "check_allocation",
    "choose_planner",
    "isoflop_minima",
    "optimal_params",
    "planner_candidates",
    "planner_for",
    "size_spread",
    "with_planner",
]

# Trusted runs whose N lies within this many decades (a robust spread) of the trend of N in C
# are the frontier alone: on Hoffmann et al.'s fitted law (2022, eq. 10) a model 26% (0.1
# decade) off the optimal size at 1e19–1e23 FLOP loses 0.04–0.11% of loss, below run-to-run
# noise, so such runs carry no evidence of where the optimum lies at a given compute.
MIN_SIZE_SPREAD_DECADES = 0.1
# Two profile minima are the fewest that give Approach 2 an exponent (a line through them).
MIN_PROFILES = 2
# Grid of ln N around sqrt(C/6) searched for the optimum: D/N from e^-18 to e^18 (1.5e-8 to 6.6e7
# tokens per parameter), steps of 0.025 in ln N, refined by a parabola through the best three.
_SPAN = 9.0
_POINTS = 721
# Resamples per evaluation of the grid: bounds its memory (rows · budgets · grid points).
_CHUNK_VALUES = 2_000_000


class AllocationError(ProcedureError):
    """No fit of the procedure identifies the allocation: it may predict loss, not plan."""


# ---------------------------------------------------------------------------------------------
# compute-optimal N of a fit (law-generic)


def _optimum(fit: Fit, raw: np.ndarray, flops: np.ndarray) -> np.ndarray:
    """N_opt ``[K, m]`` of raw parameter rows ``[K, P]`` at budgets ``flops`` ``[m]`` (NaN where
    the optimum lies outside the grid or a row overflows)."""
    step = max(1, _CHUNK_VALUES // max(1, flops.size * _POINTS))
    if len(raw) > step:
        return np.concatenate(
            [_optimum(fit, raw[i : i + step], flops) for i in range(0, len(raw), step)]
        )
    law = fit.law_object
    half = 0.5 * np.log(flops / FLOPS_PER_PARAM_TOKEN)
    offsets = np.linspace(-_SPAN, _SPAN, _POINTS)
    log_n = half[:, None] + offsets[None, :]  # [m, G]
    log_d = 2 * half[:, None] - log_n
    inputs = {"params": np.exp(log_n), "tokens": np.exp(log_d)}
    if "unique_tokens" in law.inputs:
        inputs["unique_tokens"] = inputs["tokens"]  # no repetition: every token is new
    logs = law.log_predict_at(raw, inputs)  # [K, m, G]
    logs = np.where(np.isfinite(logs), logs, np.inf)
    i = np.argmin(logs, axis=2)  # [K, m]
    inner = (i > 0) & (i < _POINTS - 1)
    j = np.clip(i, 1, _POINTS - 2)
    k_idx, m_idx = np.indices(i.shape)
    y0 = logs[k_idx, m_idx, j - 1]
    y1 = logs[k_idx, m_idx, j]
    y2 = logs[k_idx, m_idx, j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = y0 - 2 * y1 + y2
        shift = np.where(denom > 0, 0.5 * (y0 - y2) / denom, 0.0)
    step = offsets[1] - offsets[0]
    best = log_n[m_idx, j] + np.clip(shift, -1, 1) * step
    ok = inner & np.isfinite(y1) & np.isfinite(best)
    return np.where(ok, np.exp(best), np.nan)


def optimal_params(fit: Fit, flops: Any, *, resamples: bool = False) -> np.ndarray:
    """Compute-optimal N of ``fit`` at budgets ``flops`` (C = 6·N·D), for any law in N and D.

    With ``resamples`` the result is ``[K, m]``, one row per bootstrap resample (an empty
    ``[0, m]`` array without a bootstrap); else ``[m]`` for the point estimate.
    """
    flops = np.atleast_1d(np.asarray(flops, dtype=float))
    law = fit.law_object
    if resamples:
        if fit.bootstrap_params is None or len(fit.bootstrap_params) == 0:
            return np.empty((0, flops.size))
        return _optimum(fit, law.raw_array(fit.bootstrap_params), flops)
    return _optimum(fit, law.to_raw(fit.params)[None, :], flops)[0]


# ---------------------------------------------------------------------------------------------
# what the runs say without a law


def isoflop_minima(runs: Runs) -> pd.DataFrame:
    """The IsoFLOP minima of ``runs`` (``flops``, ``params_opt``): Approach 2's parabolas, budgets
    whose optimum is not bracketed left out; empty when the runs hold no profile."""
    try:
        points, _ = isoflop_points(runs)
    except ApproachError:  # several groups: no one optimum per budget
        return pd.DataFrame({"flops": [], "params_opt": []})
    return points[["flops", "params_opt"]].reset_index(drop=True)


def size_spread(runs: Runs) -> float:
    """Robust spread (1.4826 · MAD, decades) of log10 N about its least-squares line in log10 C."""
    if len(runs) < 3:
        return math.nan
    x = np.log10(runs.column("flops"))
    y = np.log10(runs.column("params"))
    if np.ptp(x) == 0:
        resid = y - np.median(y)
    else:
        slope, intercept = np.polyfit(x, y, 1)
        resid = y - (slope * x + intercept)
    return float(1.4826 * np.median(np.abs(resid - np.median(resid))))


# ---------------------------------------------------------------------------------------------
# identification


@dataclass(frozen=True)
class AllocationCheck:
    """Whether one fit identifies the allocation, and how its optimum compares with the runs'.

    Attributes
    ----------
    procedure:
        The recipe of the fit.
    identified, reasons:
        The verdict and, when False, why.
    a, a_interval, level:
        N_opt ∝ C^a and its bootstrap interval at ``level`` (None without a bootstrap).
    size_spread_decades:
        Spread of N about its trend in C among the runs the fit trusted.
    profile_error_decades:
        Mean |log10(N_opt of the fit / IsoFLOP minimum)| over the ``n_profiles`` minima measured
        in the fitted runs (NaN without profiles).
    """

    procedure: str
    identified: bool
    reasons: tuple[str, ...]
    a: float
    a_interval: tuple[float, float] | None
    level: float
    size_spread_decades: float
    profile_error_decades: float
    n_profiles: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "procedure": self.procedure,
            "identified": self.identified,
            "reasons": list(self.reasons),
            "a": _finite(self.a),
            "a_low": None if self.a_interval is None else self.a_interval[0],
            "a_high": None if self.a_interval is None else self.a_interval[1],
            "level": self.level,
            "size_spread_decades": _finite(self.size_spread_decades),
            "profile_error_decades": _finite(self.profile_error_decades),
            "n_profiles": self.n_profiles,
        }


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _trusted(fit: Fit, runs: Runs) -> Runs:
    name = fit.diagnostics.get("procedure")
    try:
        proc = get_procedure(str(name)) if name else None
    except ProcedureError:
        proc = None
    if proc is None or proc.kind != "single":
        return runs
    return runs.subset(trust_mask(proc, runs)[0])


def check_allocation(
    fit: Fit,
    runs: Runs,
    minima: pd.DataFrame | None = None,
    *,
    level: float = A_LEVEL,
    label: str | None = None,
) -> AllocationCheck:
    """Does ``fit`` (fitted on ``runs``) identify the split of a budget between N and D?

    ``minima`` are the IsoFLOP minima of ``runs`` (:func:`isoflop_minima`; computed if None);
    ``label`` names the fit in the reasons (default: its procedure, else its law).
    """
    if minima is None:
        minima = isoflop_minima(runs)
    if label is None:
        label = str(fit.diagnostics.get("procedure", fit.law))
    reasons = allocation_reasons(fit, level)
    a, interval = allocation_exponent(fit, level)
    spread = size_spread(_trusted(fit, runs))
    if math.isfinite(spread) and spread < MIN_SIZE_SPREAD_DECADES:
        reasons.append(
            f"{label}: its runs are the frontier alone (N lies within {spread:.2f} decades of its "
            f"trend in compute, under {MIN_SIZE_SPREAD_DECADES:g}): N and D move together, so it "
            "cannot tell them apart"
        )
    error = math.nan
    if len(minima) and math.isfinite(a):
        planned = optimal_params(fit, minima["flops"].to_numpy())
        err = np.abs(np.log10(planned / minima["params_opt"].to_numpy()))
        error = float(np.mean(err)) if np.all(np.isfinite(err)) else math.inf
    return AllocationCheck(
        procedure=label,
        identified=not reasons,
        reasons=tuple(reasons),
        a=a,
        a_interval=interval,
        level=level,
        size_spread_decades=spread,
        profile_error_decades=error,
        n_profiles=len(minima),
    )


# ---------------------------------------------------------------------------------------------
# the planner


@dataclass(frozen=True)
class Planner:
    """The fit that plans for a procedure, and why (``fit`` is None when none identifies)."""

    name: str | None
    fit: Fit | None
    why: str
    checks: tuple[AllocationCheck, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "planner": self.name,
            "why": self.why,
            "checks": [c.to_dict() for c in self.checks],
        }

    def diagnostics(self, member: Fit) -> dict[str, Any]:
        """What a member fit carries for planning (see :func:`~scalinglab.fitting.allocation.
        planning_fit`): the planner's name, why, and the planner fit itself unless it is
        ``member``."""
        same = self.fit is not None and (
            self.fit is member or self.name == member.diagnostics.get("procedure")
        )
        return {
            "planner": self.name,
            "why": self.why,
            "planner_fit": None if self.fit is None or same else self.fit.to_dict(),
        }


def choose_planner(
    candidates: Sequence[tuple[str, Callable[[bool], Fit]]],
    runs: Runs,
    *,
    bootstrap: bool = True,
) -> Planner:
    """Choose the fit that plans among ``candidates`` (name, ``make(bootstrap) -> Fit``), given in
    the procedure's order of preference (see the module docstring for the rule).

    ``make(False)`` may return a fit without a bootstrap (cheap, for the comparison with the
    profiles); ``make(True)`` one with it (for the interval of a), asked only of the fits that
    might plan.
    """
    minima = isoflop_minima(runs)
    profiles = len(minima) >= MIN_PROFILES
    point: dict[str, Fit] = {}
    checks: dict[str, AllocationCheck] = {}

    def point_fit(name: str, make: Callable[[bool], Fit]) -> bool:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                point[name] = make(False)
        except (FitError, ValueError):
            return False
        checks[name] = check_allocation(point[name], runs, minima, label=name)
        return True

    def ranked() -> Iterator[str]:
        if profiles:
            # Every candidate is compared with the minima, so every one is fitted.
            for name, make in candidates:
                point_fit(name, make)
            yield from sorted(point, key=lambda n: _rank(checks[n].profile_error_decades))
        else:
            # In the procedure's order, fitted only when asked: a planner after the first fit
            # that may plan costs nothing.
            for name, make in candidates:
                if point_fit(name, make):
                    yield name

    makers = dict(candidates)
    order: list[str] = []
    for name in ranked():
        order.append(name)
        if not checks[name].identified:
            continue
        fit_ = point[name]
        if bootstrap and fit_.bootstrap_params is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FitWarning)
                    fit_ = makers[name](True)
            except (FitError, ValueError):
                continue
            checks[name] = check_allocation(fit_, runs, minima, label=name)
            if not checks[name].identified:
                continue
        c = checks[name]
        if profiles:
            why = (
                "of the fits that tell N from D, its N_opt lies closest to the "
                f"{c.n_profiles} IsoFLOP minima measured in the runs "
                f"({c.profile_error_decades:.3f} decades on average)"
            )
        else:
            first = order[0]
            why = (
                "the procedure's own fit, and it tells N from D"
                if name == first
                else f"{', '.join(n for n in order[: order.index(name)])} cannot tell N from D"
            )
        rest = sorted(checks, key=lambda n: _rank(checks[n].profile_error_decades))
        asked = order + [n for n in rest if n not in order]
        return Planner(name, fit_, why, tuple(checks[n] for n in asked))
    reasons = [r for n in order for r in checks[n].reasons]
    why = "no fit of this procedure can split a budget between N and D: " + (
        "; ".join(reasons) if reasons else "none could be fitted"
    )
    return Planner(None, None, why, tuple(checks[n] for n in order))


def _rank(error: float) -> float:
    return error if math.isfinite(error) else math.inf


def planner_for(
    proc: Procedure,
    fits: Sequence[Fit],
    weights: Sequence[float],
    runs: Runs,
    *,
    bootstrap: int,
    seed: int,
    inner_errors: Mapping[str, float],
    n_jobs: int | None = None,
) -> Planner:
    """The planner of a procedure fitted as ``fits`` with ``weights`` on ``runs``."""
    by_weight = [fits[i] for i in np.argsort(-np.asarray(weights), kind="stable")]
    candidates = planner_candidates(
        proc,
        by_weight,
        runs,
        bootstrap=bootstrap,
        seed=seed,
        inner_errors=inner_errors,
        n_jobs=n_jobs,
    )
    return choose_planner(candidates, runs, bootstrap=bootstrap > 0)


def planner_candidates(
    proc: Procedure,
    member_fits: Sequence[Fit],
    runs: Runs,
    *,
    bootstrap: int,
    seed: int,
    inner_errors: Mapping[str, float],
    n_jobs: int | None = None,
) -> list[tuple[str, Callable[[bool], Fit]]]:
    """The fits that may plan for ``proc``, in its order: the chosen members (already fitted),
    heaviest first; for ``auto``, then its other candidates' recipes by inner backtest error;
    then the recipes ``proc`` names as its ``planners``."""
    out: list[tuple[str, Callable[[bool], Fit]]] = []
    for f in member_fits:
        name = str(f.diagnostics.get("procedure", f.law))
        out.append((name, lambda _b, f=f: f))
    seen = {n for n, _ in out}
    rest: list[str] = []
    if proc.kind == "auto":
        for c in sorted(
            proc.candidates,
            key=lambda c: (inner_errors.get(c, math.inf), list(proc.candidates).index(c)),
        ):
            p = get_procedure(c)
            rest.extend(p.members if p.kind == "average" else (p.name,))
    rest.extend(proc.planners)
    rest = [m for m in dict.fromkeys(rest) if m not in seen]
    out.extend((m, _recipe_maker(m, runs, bootstrap, seed, n_jobs)) for m in rest)
    return out


def _recipe_maker(
    name: str, runs: Runs, bootstrap: int, seed: int, n_jobs: int | None
) -> Callable[[bool], Fit]:
    """``make(bootstrap)`` for a planner recipe: its point fit, or with the bootstrap."""

    def make(with_boot: bool) -> Fit:
        return fit_recipe(
            name, runs, bootstrap=bootstrap if with_boot else 0, seed=seed, n_jobs=n_jobs
        )

    return make


def with_planner(
    fit: Fit,
    runs: Runs,
    *,
    planners: Sequence[str] | None = None,
    bootstrap: int = 100,
    seed: int = 0,
    n_jobs: int | None = None,
) -> tuple[Fit, Planner]:
    """``fit`` carrying the fit that splits budgets for it, chosen by the planner rule among
    ``fit`` itself and the recipes ``planners`` fitted on ``runs``.

    What ``fit_procedure`` does for a procedure, for a fit made directly (``scalinglab fit``
    without ``--procedure``, the report's own fit): the loss stays ``fit``'s; :func:`scalinglab.
    plan.allocate` then splits budgets with the planner, or refuses with the reason.

    Parameters
    ----------
    fit:
        A fit of a law in N and D, made on ``runs``.
    runs:
        The runs ``fit`` was fitted on (the IsoFLOP minima measured in them decide).
    planners:
        Recipe names (default: those of the procedure ``plain``, what ``scalinglab fit`` does).
    bootstrap, seed, n_jobs:
        For the planners' fits (the bootstrap gives the interval of a).

    Returns
    -------
    (Fit, Planner)
        ``fit`` with ``diagnostics["allocation"]`` set, and the planner.
    """
    names = get_procedure("plain").planners if planners is None else tuple(planners)
    label = str(fit.diagnostics.get("procedure", "this fit"))
    candidates: list[tuple[str, Callable[[bool], Fit]]] = [(label, lambda _b: fit)]
    candidates += [(m, _recipe_maker(m, runs, bootstrap, seed, n_jobs)) for m in names]
    planner = choose_planner(candidates, runs, bootstrap=bootstrap > 0)
    diagnostics = {**fit.diagnostics, "allocation": planner.diagnostics(fit)}
    return replace(fit, diagnostics=diagnostics), planner
