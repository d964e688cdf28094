"""Extrapolation you can trust: rolling-origin backtests, nested choice, intervals, verdicts.

A scaling law is used to predict a run nobody can afford to try twice, so the only honest measure
of a fitting procedure is how well it predicted runs it did not see. This module measures it.

Rolling-origin backtest
    For a series of compute cuts, fit on the runs at or below the cut, predict the runs above,
    and record each prediction's error against its *extrapolation factor* (the run's compute over
    the largest fitted compute). Groups (recipes, configurations) are backtested separately and
    summarised. :func:`backtest`.

Nested, automatic choice
    :func:`fit_procedure` with the ``auto`` procedure backtests every candidate *inside* the runs
    it is given (fit on the runs ≤ C_max/f, predict those above, for each inner cut f) and fits
    the candidate that predicted best. Only the fitted runs are ever read, so the choice behaves
    the same on a user's new data as on ours, and runs above an outer cut cannot change it.

Prediction intervals
    The log prediction's uncertainty is the sum of three variances: the parameters' (bootstrap
    over runs, plus the disagreement between averaged members), the run-to-run scatter (a robust
    spread of the fitted runs' log residuals), and the extrapolation error, which grows with the
    extrapolation factor x as ``growth · ln x``, ``growth`` measured by the inner backtest. A
    bootstrap alone is far too narrow: it knows nothing of how laws fail beyond their data.

Verdicts
    A prediction is marked unreliable, with its reasons, when a fitted exponent is implausible,
    when the inner backtest's error grows fast enough to project a large error at the target, or
    when near-optimal solutions (or the averaged forms) disagree at the target.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import ndtri  # the standard normal quantile; scipy.stats costs ~1 s to import

from scalinglab.fit import Fit, FitError, FitWarning
from scalinglab.procedures import (
    DEFAULT_PROCEDURE,
    PLAUSIBLE_EXPONENTS,
    Procedure,
    ProcedureError,
    fit_recipe,
    get_procedure,
    implausible_exponents,
    near_frontier_mask,
    trust_mask,
)
from scalinglab.runs import FLOPS_PER_PARAM_TOKEN, Runs, load_runs

__all__ = [
    "BacktestError",
    "BacktestResult",
    "InnerBacktest",
    "ProcedureFit",
    "Verdict",
    "backtest",
    "backtest_figure",
    "fit_procedure",
    "inner_backtest",
]

# Inner cuts: the fitted runs ≤ C_max/f are fitted and those above predicted, for each f. Three
# origins give extrapolation factors from 1 to 8, and a choice that must hold at each of them.
INNER_CUTS: tuple[float, ...] = (2.0, 4.0, 8.0)
# Inner predictions are scored on the runs within this fraction of the lowest loss at their
# compute: the runs a user extrapolates to lie near the compute-optimal frontier, and a huge model
# trained on a few million tokens (loss 9 where the frontier is at 4) would otherwise decide.
SCORE_TOLERANCE = 0.10
# A prediction whose projected extrapolation error (growth · ln x) exceeds this is unreliable.
MAX_PROJECTED_ERROR = 0.05
# Near-optimal solutions, or averaged forms, that disagree at the target by more than this.
MAX_DISAGREEMENT = 0.03
# A cut includes the runs at its compute even when C_max/2^k is a rounding error off a budget.
_INCLUSIVE = 1 + 1e-9


class BacktestError(ValueError):
    """A backtest cannot be run: no cut leaves runs on both sides, unknown group column, ..."""


def _as_runs(runs: Runs | pd.DataFrame | str | Path) -> Runs:
    return runs if isinstance(runs, Runs) else load_runs(runs)


# ---------------------------------------------------------------------------------------------
# log predictions of fits and averages


def _inputs(runs: Runs) -> dict[str, np.ndarray]:
    return {c: runs.column(c).astype(float) for c in ("params", "tokens", "flops")}


def _log_pred(fit_: Fit, inputs: Mapping[str, ArrayLike]) -> np.ndarray:
    law = fit_.law_object
    x = law.prepare_inputs({k: v for k, v in inputs.items() if v is not None})
    design = law.design({k: v.reshape(-1) for k, v in x.items()})
    return law.log_predict(law.to_raw(fit_.params)[None, :], design)[0]


def _log_pred_boot(fit_: Fit, inputs: Mapping[str, ArrayLike]) -> np.ndarray | None:
    if fit_.bootstrap_params is None or len(fit_.bootstrap_params) == 0:
        return None
    law = fit_.law_object
    x = law.prepare_inputs({k: v for k, v in inputs.items() if v is not None})
    design = law.design({k: v.reshape(-1) for k, v in x.items()})
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return law.log_predict(law.raw_array(fit_.bootstrap_params), design)


def _flat_inputs(inputs: Mapping[str, ArrayLike]) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    arrays = {k: np.asarray(v, dtype=float) for k, v in inputs.items() if v is not None}
    if not arrays:
        raise BacktestError("give the target as two of params, tokens, flops")
    shaped = np.broadcast_arrays(*arrays.values())
    shape = shaped[0].shape
    flat = {k: a.reshape(-1) for k, a in zip(arrays, shaped, strict=True)}
    if "flops" not in flat and {"params", "tokens"} <= set(flat):
        flat["flops"] = FLOPS_PER_PARAM_TOKEN * flat["params"] * flat["tokens"]
    if "flops" not in flat:
        raise BacktestError(
            f"a target needs its compute: give flops, or params and tokens (got {', '.join(flat)})"
        )
    return flat, shape


# ---------------------------------------------------------------------------------------------
# verdicts


@dataclass(frozen=True)
class Verdict:
    """Whether a prediction can be trusted, and if not, why."""

    reliable: bool
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"reliable": self.reliable, "reasons": list(self.reasons)}


def _exponent_reasons(fit_: Fit, procedure: str) -> list[str]:
    reasons = [f"{procedure}: {r}" for r in implausible_exponents(fit_.law, fit_.params)]
    for name, (lo, hi) in PLAUSIBLE_EXPONENTS.get(fit_.law, {}).items():
        v = fit_.params.get(name)
        if v is None or not (lo <= v <= hi):
            continue
        # An exponent pinned on the edge of the plausible range is one the data pushed past it.
        if v <= lo * (1 + 1e-4) or v >= hi * (1 - 1e-4):
            reasons.append(
                f"{procedure}: exponent {name} = {v:.3g} is pinned on the edge of its plausible "
                f"range [{lo:g}, {hi:g}]"
            )
    return reasons


# ---------------------------------------------------------------------------------------------
# the inner (nested) backtest


@dataclass(frozen=True)
class InnerBacktest:
    """Inner backtest of procedures on the fitted runs only.

    Attributes
    ----------
    errors:
        Mean |log error| of each procedure's inner predictions (inf where it could not be fitted).
    log_errors, factors:
        Each procedure's signed log errors and extrapolation factors, pooled over inner cuts.
    cut_errors:
        Each procedure's mean |log error| at each inner cut (in ``cuts_flops`` order).
    cuts_flops:
        The inner cuts used (FLOP).
    n_scored:
        Inner predictions scored per procedure.
    """

    errors: Mapping[str, float]
    log_errors: Mapping[str, np.ndarray]
    factors: Mapping[str, np.ndarray]
    cut_errors: Mapping[str, tuple[float, ...]]
    cuts_flops: tuple[float, ...]
    n_scored: int

    def growth(self, name: str, scatter: float) -> float:
        """Extra log error per e-fold of extrapolation factor: the k of ``k · ln x``.

        k² = Σ max(e² − s², 0) / Σ (ln x)², with s the run-to-run scatter: the part of the inner
        errors the scatter does not explain, spread over the log factors (a ratio of sums, so the
        far predictions count most).
        """
        e = np.asarray(self.log_errors.get(name, np.zeros(0)))
        x = np.asarray(self.factors.get(name, np.zeros(0)))
        ok = np.isfinite(e) & (x > 1)
        if not ok.any():
            return float("nan")
        lx2 = np.log(x[ok]) ** 2
        excess = np.maximum(e[ok] ** 2 - scatter**2, 0.0)
        return float(math.sqrt(excess.sum() / max(lx2.sum(), 1e-300)))


def _singles(proc: Procedure) -> list[Procedure]:
    if proc.kind == "single":
        return [proc]
    names = proc.members if proc.kind == "average" else proc.candidates
    out: list[Procedure] = []
    for n in names:
        for p in _singles(get_procedure(n)):
            if p.name not in {q.name for q in out}:
                out.append(p)
    return out


def _combine(
    proc: Procedure, member_logs: Mapping[str, np.ndarray], member_err: Mapping[str, float]
) -> np.ndarray | None:
    """Log prediction of a single or average procedure from its members' log predictions."""
    if proc.kind == "single":
        return member_logs.get(proc.name)
    logs = [member_logs.get(m) for m in proc.members]
    if any(v is None for v in logs):
        return None
    w = _member_weights(proc, member_err)
    return np.sum([wi * v for wi, v in zip(w, logs, strict=True)], axis=0)


def _member_weights(proc: Procedure, member_err: Mapping[str, float]) -> np.ndarray:
    k = len(proc.members)
    if proc.weighting == "equal":
        return np.full(k, 1.0 / k)
    err = np.array([member_err.get(m, np.inf) for m in proc.members], dtype=float)
    with np.errstate(divide="ignore"):
        inv = np.where(np.isfinite(err), 1.0 / np.maximum(err, 1e-6) ** 2, 0.0)
    if inv.sum() <= 0:
        return np.full(k, 1.0 / k)
    return inv / inv.sum()


def inner_backtest(
    procedures: Sequence[str | Procedure],
    runs: Runs,
    *,
    cuts: Sequence[float] = INNER_CUTS,
    score_tolerance: float = SCORE_TOLERANCE,
    refine: int = 8,
    n_jobs: int | None = None,
) -> InnerBacktest:
    """Backtest ``procedures`` inside ``runs``: for each f in ``cuts``, fit on the runs with
    C ≤ C_max/f and predict the runs above that lie near the frontier.

    Only ``runs`` are read; nothing above their largest compute matters. Single recipes shared by
    several procedures (members of averages, candidates) are fitted once per cut.

    Parameters
    ----------
    procedures:
        Single or average procedures (an ``auto`` is expanded to its candidates).
    runs:
        The fitted runs.
    cuts:
        Divisors of the largest compute, each > 1.
    score_tolerance:
        Inner predictions are scored on runs within this fraction of the lowest loss at their
        compute (see :data:`SCORE_TOLERANCE`).
    refine:
        Starts refined per inner fit. Fewer than a full fit's 64: these fits are many, and on
        the reference data 8 reached the same optima in half the time.
    """
    procs = []
    for p in procedures:
        p = get_procedure(p)
        if p.kind == "auto":
            procs.extend(get_procedure(c) for c in p.candidates)
        else:
            procs.append(p)
    singles: list[Procedure] = []
    for p in procs:
        for s in _singles(p):
            if s.name not in {q.name for q in singles}:
                singles.append(s)
    flops = runs.column("flops")
    loss = runs.column("loss")
    c_max = float(flops.max())
    frontier = near_frontier_mask(flops, loss, score_tolerance)
    logs: dict[str, list[np.ndarray]] = {p.name: [] for p in procs}
    facs: dict[str, list[np.ndarray]] = {p.name: [] for p in procs}
    single_errs: dict[str, list[np.ndarray]] = {s.name: [] for s in singles}
    used_cuts: list[float] = []
    n_scored = 0
    for f in sorted(cuts, reverse=True):
        if not f > 1:
            raise BacktestError(
                f"inner cuts must be > 1 (divisors of the largest compute), got {f}"
            )
        cut = c_max / f
        train_mask = flops <= cut * _INCLUSIVE
        test_mask = ~train_mask & frontier
        if not test_mask.any() or train_mask.sum() < 2:
            continue
        train = runs.subset(train_mask)
        test = runs.subset(test_mask)
        inputs = _inputs(test)
        obs = np.log(test.column("loss"))
        factor = test.column("flops") / float(train.column("flops").max())
        # Weights of a backtest-weighted average at this origin come from the deeper origins
        # only (cuts run deepest first): the runs it is scored on must not set its weights.
        member_err = {
            k: float(np.mean(np.abs(np.concatenate(v)))) for k, v in single_errs.items() if v
        }
        member_logs: dict[str, np.ndarray] = {}
        for s in singles:
            try:
                # Inner fits are many and disposable: their FitWarnings would drown the user;
                # what matters from them reaches the choice and the intervals.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FitWarning)
                    f_ = fit_recipe(s, train, refine=refine, n_jobs=n_jobs)
            except (FitError, ValueError):
                continue
            lp = _log_pred(f_, inputs)
            member_logs[s.name] = lp
            single_errs[s.name].append(lp - obs)
        if not member_logs:
            continue  # no recipe can be fitted on so few runs: this origin says nothing
        used_cuts.append(cut)
        n_scored += int(test_mask.sum())
        for p in procs:
            lp = _combine(p, member_logs, member_err)
            if lp is None:
                logs[p.name].append(np.full(obs.shape, np.inf))
            else:
                logs[p.name].append(lp - obs)
            facs[p.name].append(factor)
    if not used_cuts:
        raise BacktestError(
            f"no inner cut among C_max/{', C_max/'.join(f'{c:g}' for c in cuts)} leaves runs on "
            f"both sides ({len(runs)} runs, C from {flops.min():.3g} to {c_max:.3g} FLOP)"
        )
    errors: dict[str, float] = {}
    log_errors: dict[str, np.ndarray] = {}
    factors: dict[str, np.ndarray] = {}
    cut_errors: dict[str, tuple[float, ...]] = {}
    for p in procs:
        cut_errors[p.name] = tuple(
            float(np.mean(np.abs(e))) if np.all(np.isfinite(e)) else math.inf for e in logs[p.name]
        )
        e = np.concatenate(logs[p.name]) if logs[p.name] else np.zeros(0)
        log_errors[p.name] = e
        factors[p.name] = np.concatenate(facs[p.name]) if facs[p.name] else np.zeros(0)
        errors[p.name] = float(np.mean(np.abs(e))) if e.size and np.all(np.isfinite(e)) else np.inf
    return InnerBacktest(
        errors=MappingProxyType(errors),
        log_errors=MappingProxyType(log_errors),
        factors=MappingProxyType(factors),
        cut_errors=MappingProxyType(cut_errors),
        cuts_flops=tuple(used_cuts),
        n_scored=n_scored,
    )


# ---------------------------------------------------------------------------------------------
# a procedure's fit


@dataclass(frozen=True, eq=False)
class ProcedureFit:
    """The result of fitting a procedure: member fits, weights, uncertainty model, verdict.

    Attributes
    ----------
    procedure:
        The procedure asked for (``"auto"``, ``"besiroglu2024"``, ...).
    chosen:
        The procedure actually fitted (for ``auto``, the candidate it picked; else the same).
    why:
        One sentence saying why ``chosen`` was used.
    fits:
        The member fits (one for a single recipe).
    weights:
        Their weights in the geometric-mean prediction (sum 1).
    max_fitted_flops:
        Largest compute among the runs given: extrapolation factors are measured from it.
    scatter:
        Run-to-run scatter: a robust standard deviation (1.4826 · MAD) of the log residuals of
        the trusted runs.
    growth:
        Extrapolation error per e-fold of extrapolation factor, from the inner backtest (NaN
        when there was none).
    inner_errors:
        Mean |log error| of each procedure in the inner backtest.
    reliable, reasons:
        The verdict on the fit itself (exponents, identifiability). :meth:`assess` adds the
        checks that depend on a target.
    """

    procedure: str
    chosen: str
    why: str
    fits: tuple[Fit, ...]
    weights: tuple[float, ...]
    max_fitted_flops: float
    n_runs: int
    scatter: float
    growth: float
    inner_errors: Mapping[str, float] = field(default_factory=dict)
    inner_cuts_flops: tuple[float, ...] = ()
    reliable: bool = True
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner_errors", MappingProxyType(dict(self.inner_errors)))

    @property
    def fit(self) -> Fit:
        """The heaviest member, carrying the verdict: what a single-fit consumer (plan, the
        report) reads. Its prediction is that member's, not the average's."""
        i = int(np.argmax(self.weights))
        return replace(self.fits[i], reliable=self.reliable, reasons=self.reasons)

    def log_predict(self, **inputs: ArrayLike) -> np.ndarray:
        """Weighted mean log prediction at ``inputs`` (flat)."""
        flat, _ = _flat_inputs(inputs)
        return np.sum(
            [w * _log_pred(f, flat) for w, f in zip(self.weights, self.fits, strict=True)], axis=0
        )

    def predict(self, **inputs: ArrayLike) -> float | np.ndarray:
        """Predicted loss, e.g. ``pf.predict(params=7e10, tokens=1.4e12)``."""
        flat, shape = _flat_inputs(inputs)
        out = np.exp(self.log_predict(**flat)).reshape(shape)
        return float(out) if out.ndim == 0 else out

    def _sigma(self, flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        logs = np.array([_log_pred(f, flat) for f in self.fits])
        w = np.asarray(self.weights)[:, None]
        mean = np.sum(w * logs, axis=0)
        members = np.sqrt(np.sum(w * (logs - mean) ** 2, axis=0))
        boots = [_log_pred_boot(f, flat) for f in self.fits]
        present = [b for b in boots if b is not None]
        if present and len(present) == len(boots):
            # Members share the seed and the runs, so resample i of each is the same resample:
            # the average's draw i combines them.
            k = min(len(b) for b in present)
            draws = np.sum(
                [wi * b[:k] for wi, b in zip(self.weights, present, strict=True)], axis=0
            )
            with np.errstate(invalid="ignore"):
                params = np.nanstd(np.where(np.isfinite(draws), draws, np.nan), axis=0)
        else:
            params = np.full(mean.shape, np.nan)
        factor = np.maximum(np.asarray(flat["flops"]) / self.max_fitted_flops, 1.0)
        growth = 0.0 if not math.isfinite(self.growth) else self.growth
        extrap = growth * np.log(factor)
        return {
            "mean": mean,
            "parameters": params,
            "members": members,
            "scatter": np.full(mean.shape, self.scatter),
            "extrapolation": extrap,
            "factor": factor,
        }

    def interval(
        self, level: float = 0.9, **inputs: ArrayLike
    ) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Prediction interval at ``level`` for a new run at ``inputs``.

        Log-normal with variance = bootstrap parameter variance + member disagreement² +
        run-to-run scatter² + (growth · ln x)², x the extrapolation factor. Without a bootstrap
        the parameter term is left out (the fit says so in its reasons).
        """
        if not 0 < level < 1:
            raise BacktestError(f"level must lie in (0, 1), got {level!r}")
        flat, shape = _flat_inputs(inputs)
        s = self._sigma(flat)
        par = np.nan_to_num(s["parameters"], nan=0.0)
        # The members' disagreement is not added: the growth term is measured on the combined
        # prediction's own inner backtest, which already holds whatever error it causes.
        sd = np.sqrt(par**2 + s["scatter"] ** 2 + s["extrapolation"] ** 2)
        z = float(ndtri(0.5 + level / 2))
        lo = np.exp(s["mean"] - z * sd).reshape(shape)
        hi = np.exp(s["mean"] + z * sd).reshape(shape)
        if lo.ndim == 0:
            return float(lo), float(hi)
        return lo, hi

    def uncertainty(self, **inputs: ArrayLike) -> dict[str, np.ndarray]:
        """The log-space standard deviations the interval adds up, by source."""
        flat, _ = _flat_inputs(inputs)
        return self._sigma(flat)

    def assess(self, **inputs: ArrayLike) -> Verdict:
        """Verdict on the prediction at the target ``inputs`` (the worst over an array)."""
        flat, _ = _flat_inputs(inputs)
        reasons = list(self.reasons)
        s = self._sigma(flat)
        i = int(np.argmax(s["factor"]))
        x = float(s["factor"][i])
        projected = float(s["extrapolation"][i])
        if projected > MAX_PROJECTED_ERROR:
            reasons.append(
                f"backtest error grows fast with extrapolation: {self.growth:.3g} per e-fold, "
                f"{projected:.1%} projected at ×{x:.3g} beyond the largest fitted run"
            )
        for f in self.fits:
            if len(f.optima) < 2:
                continue
            law = f.law_object
            raw = np.array([law.to_raw({p: o[p] for p in law.param_names}) for o in f.optima])
            x_in = law.prepare_inputs(flat)
            design = law.design({k: v.reshape(-1) for k, v in x_in.items()})
            preds = np.exp(law.log_predict(raw, design))
            rel = float(np.max((preds.max(axis=0) - preds.min(axis=0)) / preds[0]))
            if rel > MAX_DISAGREEMENT:
                reasons.append(
                    f"{f.diagnostics.get('procedure', f.law)}: near-optimal solutions disagree "
                    f"at the target by {rel:.1%}"
                )
        return Verdict(reliable=not reasons, reasons=tuple(reasons))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (member fits without their bootstrap draws)."""
        return {
            "procedure": self.procedure,
            "chosen": self.chosen,
            "why": self.why,
            "reliable": self.reliable,
            "reasons": list(self.reasons),
            "n_runs": self.n_runs,
            "max_fitted_flops": self.max_fitted_flops,
            "scatter_log": self.scatter,
            "growth_per_efold": self.growth,
            "inner_errors": dict(self.inner_errors),
            "inner_cuts_flops": list(self.inner_cuts_flops),
            "members": [
                {
                    "procedure": f.diagnostics.get("procedure", f.law),
                    "weight": w,
                    "law": f.law,
                    "params": dict(f.params),
                    "trusted_runs": f.diagnostics.get("trusted_runs"),
                }
                for f, w in zip(self.fits, self.weights, strict=True)
            ],
        }


def _robust_scatter(resid: np.ndarray) -> float:
    resid = resid[np.isfinite(resid)]
    if resid.size < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(resid - np.median(resid))))


def _choose(proc: Procedure, inner: InnerBacktest | None, why: str) -> tuple[Procedure, str]:
    """The nested choice of an ``auto`` procedure: its default hedge, unless a candidate predicted
    better than the hedge at *every* inner origin (then the best such candidate).

    Requiring consistency across origins, not merely the lowest pooled error, is what keeps the
    choice from chasing noise: on the reference data the pooled-error winner inside the fitted
    runs was often not the best beyond them, while a form that wins at every origin usually was.
    """
    hedge = get_procedure(proc.default or proc.candidates[0])
    if inner is None:
        return hedge, f"chose {hedge.name}, the default: {why}"
    finite = {k: v for k, v in inner.errors.items() if math.isfinite(v)}
    if not finite:
        return hedge, f"chose {hedge.name}, the default: no candidate could be backtested"
    cuts = "/".join(f"{c:.3g}" for c in inner.cuts_flops)
    ranked = sorted(finite.items(), key=lambda kv: kv[1])
    table = ", ".join(f"{k} {v:.2%}" for k, v in ranked[:4])
    order = list(proc.candidates)
    if hedge.name not in finite:
        # The hedge could not be fitted at some inner cut (too few runs for it there): the
        # candidate that could be, everywhere, with the smallest error stands in.
        best = min(finite, key=lambda k: (finite[k], order.index(k)))
        return get_procedure(best), (
            f"chose {best}: the default {hedge.name} could not be fitted at every inner cut "
            f"({cuts} FLOP); pooled mean |error| inside the fitted runs: {table}"
        )
    base = inner.cut_errors[hedge.name]
    winners = [
        name
        for name in finite
        if name != hedge.name
        and all(a < b for a, b in zip(inner.cut_errors[name], base, strict=True))
    ]
    if not winners:
        return hedge, (
            f"kept the default {hedge.name} (inner backtest mean |error| "
            f"{finite[hedge.name]:.2%}): no candidate predicted better at every inner cut "
            f"({cuts} FLOP); pooled: {table}"
        )
    best = min(winners, key=lambda k: (finite[k], order.index(k)))
    return get_procedure(best), (
        f"chose {best}: it predicted better than the default {hedge.name} at every inner cut "
        f"({cuts} FLOP), inside the fitted runs only; pooled mean |error|: {table}"
    )


def fit_procedure(
    procedure: str | Procedure,
    runs: Runs | pd.DataFrame | str | Path,
    *,
    bootstrap: int = 100,
    seed: int = 0,
    target: Mapping[str, float] | None = None,
    inner_cuts: Sequence[float] = INNER_CUTS,
    n_jobs: int | None = None,
) -> ProcedureFit:
    """Fit ``runs`` with a named procedure, with its uncertainty model and verdict.

    Parameters
    ----------
    procedure:
        A name of :data:`scalinglab.procedures.PROCEDURES` (``"auto"``, the default everywhere
        one is not named, chooses by a backtest inside ``runs``) or a
        :class:`~scalinglab.procedures.Procedure`.
    runs:
        The runs to fit: a :class:`~scalinglab.runs.Runs`, DataFrame or path.
    bootstrap:
        Bootstrap resamples of each member fit (parameter uncertainty of the intervals).
    seed:
        Seeds the bootstrap.
    target:
        Where the prediction matters (``{"params": 7e10, "tokens": 1.4e12}``): the verdict then
        includes the target checks (see :meth:`ProcedureFit.assess`).
    inner_cuts:
        Divisors of the largest compute for the inner backtest.

    Returns
    -------
    ProcedureFit
    """
    table = _as_runs(runs)
    proc = get_procedure(procedure)
    flops = table.column("flops")
    inner: InnerBacktest | None = None
    why = ""
    try:
        inner = inner_backtest([proc], table, cuts=inner_cuts, n_jobs=n_jobs)
    except BacktestError as exc:
        why = f"no inner backtest ({exc})"
    chosen = proc
    if proc.kind == "auto":
        chosen, why = _choose(proc, inner, why)
    elif not why:
        why = f"{proc.name} as asked"
    # An auto whose choice cannot be fitted on all the runs (a trust filter leaves too few)
    # falls back on the next candidate by inner error; a named procedure simply fails.
    attempts = [chosen]
    if proc.kind == "auto":
        errs = {} if inner is None else dict(inner.errors)
        rest = sorted(
            (c for c in proc.candidates if c != chosen.name),
            key=lambda c: (errs.get(c, math.inf), list(proc.candidates).index(c)),
        )
        attempts += [get_procedure(c) for c in rest]
    fits: list[Fit] = []
    members: list[Procedure] = []
    failure: FitError | None = None
    for attempt in attempts:
        members = (
            [get_procedure(m) for m in attempt.members] if attempt.kind == "average" else [attempt]
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                fits = [
                    fit_recipe(
                        m, table, bootstrap=bootstrap, seed=seed, target=target, n_jobs=n_jobs
                    )
                    for m in members
                ]
        except FitError as exc:
            failure = failure or exc
            continue
        if attempt is not chosen:
            why += (
                f"; {chosen.name} cannot be fitted on these runs ({failure}): fell back on "
                f"{attempt.name}"
            )
            chosen = attempt
        break
    else:
        assert failure is not None
        raise failure
    if chosen.kind == "average":
        member_err = dict(inner.errors) if inner is not None else {}
        weights = _member_weights(chosen, member_err)
    else:
        weights = np.array([1.0])
    # Run-to-run scatter on the runs the members trust (their union).
    trusted_mask = np.zeros(len(table), dtype=bool)
    for m in members:
        trusted_mask |= trust_mask(m, table)[0]
    trusted = table.subset(trusted_mask)
    logs = np.sum(
        [w * _log_pred(f, _inputs(trusted)) for w, f in zip(weights, fits, strict=True)], axis=0
    )
    scatter = _robust_scatter(logs - np.log(trusted.column("loss")))
    growth = inner.growth(chosen.name, scatter) if inner is not None else float("nan")
    if proc.kind == "auto" and inner is not None and proc.default:
        # The chosen candidate's inner errors are the smallest by selection (winner's curse):
        # its intervals are not allowed to be narrower than the default hedge's.
        hedge_growth = inner.growth(proc.default, scatter)
        if math.isfinite(hedge_growth) and not growth >= hedge_growth:
            growth = hedge_growth
    reasons: list[str] = []
    for f in fits:
        reasons.extend(_exponent_reasons(f, f.diagnostics.get("procedure", f.law)))
    if inner is None:
        reasons.append(
            "no backtest inside the runs was possible, so the extrapolation error is unknown"
        )
    result = ProcedureFit(
        procedure=proc.name,
        chosen=chosen.name,
        why=why,
        fits=tuple(fits),
        weights=tuple(float(w) for w in weights),
        max_fitted_flops=float(flops.max()),
        n_runs=len(table),
        scatter=scatter,
        growth=growth,
        inner_errors={} if inner is None else dict(inner.errors),
        inner_cuts_flops=() if inner is None else inner.cuts_flops,
        reliable=not reasons,
        reasons=tuple(reasons),
    )
    if target:
        v = result.assess(**target)
        result = replace(result, reliable=v.reliable, reasons=v.reasons)
    return result


# ---------------------------------------------------------------------------------------------
# the rolling-origin backtest


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Every held-out prediction of a rolling-origin backtest, and summaries of them.

    Attributes
    ----------
    predictions:
        One row per (group, cut, procedure, held-out run): ``group``, ``cut_flops``,
        ``procedure``, ``chosen``, ``params``, ``tokens``, ``flops``, ``loss``, ``predicted``,
        ``rel_error``, ``factor``, ``lo``, ``hi``, ``covered``, ``reliable``, ``reasons``.
    fits:
        One row per (group, cut, procedure): the chosen recipe, why, its parameters, verdict.
    level:
        Level of the prediction intervals.
    """

    predictions: pd.DataFrame
    fits: pd.DataFrame
    level: float
    procedures: tuple[str, ...]

    FACTOR_BINS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, math.inf)

    def summary(self, by: Sequence[str] = ("procedure",)) -> pd.DataFrame:
        """Mean and max |relative error|, interval coverage, flagged share, grouped by ``by``."""
        p = self.predictions
        if p.empty:
            return pd.DataFrame()
        g = p.assign(abs_error=p["rel_error"].abs()).groupby(list(by), sort=False)
        out = g.agg(
            n=("abs_error", "size"),
            mean_abs_error=("abs_error", "mean"),
            max_abs_error=("abs_error", "max"),
            mean_error=("rel_error", "mean"),
            coverage=("covered", "mean"),
            unreliable=("reliable", lambda s: float(np.mean(~s.astype(bool)))),
        )
        return out.reset_index()

    def by_group(self) -> pd.DataFrame:
        """Per group and procedure: errors, coverage, and the verdict (reasons joined)."""
        s = self.summary(("group", "procedure"))
        if s.empty:
            return s
        verdict = (
            self.fits.groupby(["group", "procedure"], sort=False)
            .agg(
                reliable=("reliable", "all"),
                chosen=("chosen", lambda c: ", ".join(dict.fromkeys(c))),
                reasons=("reasons", lambda rs: sorted({r for x in rs for r in x})),
            )
            .reset_index()
        )
        return s.merge(verdict, on=["group", "procedure"], how="left")

    def overall(self) -> pd.DataFrame:
        """Per procedure: the mean over groups of each group's mean |error|, the worst group,
        and the pooled coverage (what the issue's targets are stated in)."""
        g = self.by_group()
        if g.empty:
            return g
        out = g.groupby("procedure", sort=False).agg(
            groups=("group", "size"),
            mean_abs_error=("mean_abs_error", "mean"),
            worst_group_error=("mean_abs_error", "max"),
            flagged_groups=("reliable", lambda s: int((~s.astype(bool)).sum())),
        )
        cov = self.predictions.groupby("procedure", sort=False)["covered"].mean()
        out["coverage"] = cov
        out["n_predictions"] = self.predictions.groupby("procedure", sort=False).size()
        return out.reset_index()

    def by_factor(self) -> pd.DataFrame:
        """Mean |error| and coverage by extrapolation-factor bin (1–2, 2–4, ...) and procedure."""
        p = self.predictions
        if p.empty:
            return pd.DataFrame()
        bins = pd.cut(p["factor"], list(self.FACTOR_BINS), right=False)
        g = p.assign(abs_error=p["rel_error"].abs(), factor_bin=bins.astype(str)).groupby(
            ["procedure", "factor_bin"], sort=False, observed=True
        )
        out = g.agg(
            n=("abs_error", "size"),
            mean_abs_error=("abs_error", "mean"),
            coverage=("covered", "mean"),
            factor_mid=("factor", "median"),
        ).reset_index()
        rank = {name: i for i, name in enumerate(self.procedures)}
        out = out.assign(_rank=out["procedure"].map(rank))
        out = out.sort_values(["_rank", "factor_mid"], kind="stable").drop(columns="_rank")
        return out.reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: summaries, fits and every prediction."""
        fits = self.fits.copy()
        fits["reasons"] = fits["reasons"].map(list)
        preds = self.predictions.copy()
        preds["reasons"] = preds["reasons"].map(list)
        by_group = self.by_group()
        if not by_group.empty:
            by_group["reasons"] = by_group["reasons"].map(list)
        return {
            "level": self.level,
            "procedures": list(self.procedures),
            "overall": self.overall().to_dict(orient="records"),
            "by_group": by_group.to_dict(orient="records"),
            "by_factor": self.by_factor().to_dict(orient="records"),
            "fits": fits.to_dict(orient="records"),
            "predictions": preds.to_dict(orient="records"),
        }


def _default_cuts(flops: np.ndarray, n_cuts: int) -> list[float]:
    # Rolling origin: the largest compute halved, quartered, ... (n_cuts cuts).
    c_max = float(flops.max())
    return [c_max / 2.0**k for k in range(1, n_cuts + 1)]


def backtest(
    runs: Runs | pd.DataFrame | str | Path,
    procedures: Sequence[str | Procedure] = ("besiroglu2024", DEFAULT_PROCEDURE),
    *,
    cuts: Sequence[float] | None = None,
    n_cuts: int = 4,
    min_factor: float = 1.0,
    group_by: str | None = None,
    level: float = 0.9,
    bootstrap: int = 100,
    seed: int = 0,
    inner_cuts: Sequence[float] = INNER_CUTS,
    n_jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of ``procedures`` on ``runs``.

    For each group and each compute cut, every procedure is fitted on the runs with C ≤ cut
    (nothing else is passed to it) and predicts the runs with C > cut (and ≥ ``min_factor`` ×
    cut); each prediction's relative error, extrapolation factor, interval and verdict is kept.

    Parameters
    ----------
    runs:
        The runs (a :class:`~scalinglab.runs.Runs`, DataFrame or path).
    procedures:
        Procedure names (or :class:`~scalinglab.procedures.Procedure` values) to compare.
    cuts:
        Compute cuts in FLOP. Default: ``n_cuts`` cuts at C_max/2, C_max/4, ... of each group.
    min_factor:
        Predict only runs with C ≥ ``min_factor`` · cut (e.g. 8 to test 8× extrapolation only).
    group_by:
        A column of the runs table; each of its values is backtested separately (e.g. ``group``).
    level:
        Level of the prediction intervals.
    bootstrap:
        Bootstrap resamples per fit, for the intervals.
    progress:
        Called as ``progress(done, total)`` after each fit.

    Raises
    ------
    BacktestError
        Unknown group column, bad cuts, or no cut leaves runs on both sides.
    """
    table = _as_runs(runs)
    procs = [get_procedure(p) for p in procedures]
    if not procs:
        raise BacktestError("give at least one procedure")
    if not 0 < level < 1:
        raise BacktestError(f"level must lie in (0, 1), got {level!r}")
    if not (math.isfinite(min_factor) and min_factor >= 1):
        raise BacktestError(f"min_factor must be >= 1, got {min_factor!r}")
    if cuts is not None:
        bad = [c for c in cuts if not (math.isfinite(c) and c > 0)]
        if bad or not len(cuts):
            raise BacktestError(f"cuts must be FLOP counts > 0, got {list(cuts)!r}")
    if group_by is not None and group_by not in table.frame.columns:
        raise BacktestError(
            f"--group-by {group_by!r} is not a column of the runs table; columns: "
            f"{', '.join(map(str, table.frame.columns))}"
        )
    if group_by is None:
        groups: list[tuple[str, Runs]] = [("all", table)]
    else:
        keys = table.frame[group_by].astype(str)
        groups = [(str(k), table.subset((keys == k).to_numpy())) for k in dict.fromkeys(keys)]
    plan: list[tuple[str, Runs, float]] = []
    for name, g in groups:
        flops = g.column("flops")
        gcuts = list(cuts) if cuts is not None else _default_cuts(flops, n_cuts)
        for c in gcuts:
            below = flops <= c * _INCLUSIVE
            above = flops >= c / _INCLUSIVE * min_factor if min_factor > 1 else ~below
            if below.sum() >= 2 and above.any():
                plan.append((name, g, float(c)))
    if not plan:
        raise BacktestError(
            "no cut leaves runs on both sides"
            + (f" at ≥ {min_factor:g}× the cut" if min_factor > 1 else "")
            + f" (compute from {table.column('flops').min():.3g} to "
            f"{table.column('flops').max():.3g} FLOP)"
        )
    total = len(plan) * len(procs)
    done = 0
    pred_rows: list[dict[str, Any]] = []
    fit_rows: list[dict[str, Any]] = []
    for name, g, cut in plan:
        flops = g.column("flops")
        train = g.subset(flops <= cut * _INCLUSIVE)
        above = (
            flops >= cut / _INCLUSIVE * min_factor if min_factor > 1 else flops > cut * _INCLUSIVE
        )
        test = g.subset(above)
        t_in = _inputs(test)
        obs = test.column("loss")
        for proc in procs:
            t0 = time.perf_counter()
            try:
                pf = fit_procedure(
                    proc,
                    train,
                    bootstrap=bootstrap,
                    seed=seed,
                    inner_cuts=inner_cuts,
                    n_jobs=n_jobs,
                )
            except (FitError, BacktestError, ProcedureError) as exc:
                fit_rows.append(
                    {
                        "group": name,
                        "cut_flops": cut,
                        "procedure": proc.name,
                        "chosen": None,
                        "why": f"could not fit: {exc}",
                        "params": None,
                        "reliable": False,
                        "reasons": (f"could not fit: {exc}",),
                        "n_train": len(train),
                        "seconds": time.perf_counter() - t0,
                    }
                )
                done += 1
                if progress is not None:
                    progress(done, total)
                continue
            pred = np.asarray(pf.predict(**t_in), dtype=float).reshape(-1)
            lo, hi = pf.interval(level, **t_in)
            lo = np.asarray(lo).reshape(-1)
            hi = np.asarray(hi).reshape(-1)
            factor = test.column("flops") / pf.max_fitted_flops
            verdicts = [
                pf.assess(params=test.column("params")[i], tokens=test.column("tokens")[i])
                for i in range(len(test))
            ]
            fit_verdict = pf.assess(**t_in)
            fit_rows.append(
                {
                    "group": name,
                    "cut_flops": cut,
                    "procedure": proc.name,
                    "chosen": pf.chosen,
                    "why": pf.why,
                    "params": [dict(f.params) for f in pf.fits],
                    "reliable": fit_verdict.reliable,
                    "reasons": fit_verdict.reasons,
                    "n_train": len(train),
                    "seconds": time.perf_counter() - t0,
                }
            )
            for i in range(len(test)):
                pred_rows.append(
                    {
                        "group": name,
                        "cut_flops": cut,
                        "procedure": proc.name,
                        "chosen": pf.chosen,
                        "params": float(test.column("params")[i]),
                        "tokens": float(test.column("tokens")[i]),
                        "flops": float(test.column("flops")[i]),
                        "loss": float(obs[i]),
                        "predicted": float(pred[i]),
                        "rel_error": float(pred[i] / obs[i] - 1.0),
                        "factor": float(factor[i]),
                        "lo": float(lo[i]),
                        "hi": float(hi[i]),
                        "covered": bool(lo[i] <= obs[i] <= hi[i]),
                        "reliable": verdicts[i].reliable,
                        "reasons": verdicts[i].reasons,
                    }
                )
            done += 1
            if progress is not None:
                progress(done, total)
    return BacktestResult(
        predictions=pd.DataFrame(pred_rows),
        fits=pd.DataFrame(fit_rows),
        level=level,
        procedures=tuple(p.name for p in procs),
    )


def backtest_figure(result: BacktestResult) -> Any:
    """Error against extrapolation factor, one series per procedure (a matplotlib Figure).

    Points are held-out predictions (|relative error|, log factor axis); lines are the
    per-bin means. Drawn with the object-oriented API, so no global pyplot state is touched.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    palette = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
    p = result.predictions
    binned = result.by_factor()
    for i, name in enumerate(result.procedures):
        color = palette[i % len(palette)]
        rows = p[p["procedure"] == name]
        if rows.empty:
            continue
        ax.scatter(rows["factor"], 100 * rows["rel_error"].abs(), s=6, alpha=0.25, color=color)
        b = binned[binned["procedure"] == name]
        ax.plot(b["factor_mid"], 100 * b["mean_abs_error"], marker="o", color=color, label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"×{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_xlabel("extrapolation factor (run compute / largest fitted compute)")
    ax.set_ylabel("|relative error| of the loss (%)")
    ax.set_title("Backtest: prediction error against extrapolation")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
