"""Fitting by a procedure: the nested choice, prediction intervals and verdicts.

Nested, automatic choice
    :func:`fit_procedure` with the ``auto`` procedure backtests every candidate *inside* the runs
    it is given (:mod:`scalinglab.procedures.inner`) and fits the candidate that predicted best.

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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import ndtri  # the standard normal quantile; scipy.stats costs ~1 s to import

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.fitting import Fit, FitError, FitWarning
from scalinglab.fitting.verdicts import exponent_reasons
from scalinglab.procedures.allocation import AllocationError, Planner, planner_for
from scalinglab.procedures.curves import curve_points
from scalinglab.procedures.errors import BacktestError, ProcedureError
from scalinglab.procedures.inner import (
    INNER_CUTS,
    InnerBacktest,
    inner_backtest,
    member_weights,
    runs_inputs,
)
from scalinglab.procedures.recipes import fit_recipe, trust_mask
from scalinglab.procedures.registry import Procedure, get_procedure
from scalinglab.runs import Runs, as_runs

__all__ = ["MAX_DISAGREEMENT", "MAX_PROJECTED_ERROR", "ProcedureFit", "Verdict", "fit_procedure"]

# A prediction whose projected extrapolation error (growth · ln x) exceeds this is unreliable.
MAX_PROJECTED_ERROR = 0.05
# Near-optimal solutions, or averaged forms, that disagree at the target by more than this.
MAX_DISAGREEMENT = 0.03


def _flat_inputs(inputs: Mapping[str, ArrayLike]) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    arrays = {k: np.asarray(v, dtype=float) for k, v in inputs.items() if v is not None}
    if not arrays:
        raise BacktestError("give the target as two of params, tokens, flops", field="target")
    shaped = np.broadcast_arrays(*arrays.values())
    shape = shaped[0].shape
    flat = {k: a.reshape(-1) for k, a in zip(arrays, shaped, strict=True)}
    if "flops" not in flat and {"params", "tokens"} <= set(flat):
        flat["flops"] = FLOPS_PER_PARAM_TOKEN * flat["params"] * flat["tokens"]
    if "flops" not in flat:
        raise BacktestError(
            f"a target needs its compute: give flops, or params and tokens (got {', '.join(flat)})",
            field="target",
        )
    return flat, shape


@dataclass(frozen=True)
class Verdict:
    """Whether a prediction can be trusted, and if not, why."""

    reliable: bool
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"reliable": self.reliable, "reasons": list(self.reasons)}


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
    planner:
        Which fit splits a budget between N and D, and why (:mod:`~scalinglab.procedures.
        allocation`): a member, for ``auto`` possibly another candidate, or none (then
        :attr:`plan_fit` refuses with the reasons).
    interval_scale:
        The procedure's calibration of its interval half-widths (see
        :attr:`~scalinglab.procedures.Procedure.interval_scale`).
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
    planner: Planner | None = None
    interval_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "inner_errors", MappingProxyType(dict(self.inner_errors)))

    @property
    def fit(self) -> Fit:
        """The heaviest member, carrying the verdict: what a single-fit consumer (plan, the
        report) reads. Its prediction is that member's, not the average's; its diagnostics
        carry the planner (``"allocation"``), so that planning from it (or from its saved JSON)
        splits budgets with the fit that identifies the split, or refuses."""
        i = int(np.argmax(self.weights))
        member = self.fits[i]
        diagnostics = dict(member.diagnostics)
        diagnostics["allocation"] = (
            self.planner.diagnostics(member)
            if self.planner is not None
            else {"planner": None, "why": "no planner was chosen (fit_procedure(planner=False))"}
        )
        return replace(
            member, reliable=self.reliable, reasons=self.reasons, diagnostics=diagnostics
        )

    @property
    def plan_fit(self) -> Fit:
        """The fit that splits a budget between N and D (see :attr:`planner`).

        Raises
        ------
        AllocationError
            No fit of the procedure tells N from D; the message says why for each.
        """
        if self.planner is None or self.planner.fit is None:
            why = (
                "no planner was chosen (fit_procedure(planner=False))"
                if self.planner is None
                else self.planner.why
            )
            raise AllocationError(why, field="procedure")
        return self.planner.fit

    def log_predict(self, **inputs: ArrayLike) -> np.ndarray:
        """Weighted mean log prediction at ``inputs`` (flat)."""
        flat, _ = _flat_inputs(inputs)
        return np.sum(
            [w * f.log_predict(**flat) for w, f in zip(self.weights, self.fits, strict=True)],
            axis=0,
        )

    def predict(self, **inputs: ArrayLike) -> float | np.ndarray:
        """Predicted loss, e.g. ``pf.predict(params=7e10, tokens=1.4e12)``."""
        flat, shape = _flat_inputs(inputs)
        out = np.exp(self.log_predict(**flat)).reshape(shape)
        return float(out) if out.ndim == 0 else out

    def _sigma(self, flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        logs = np.array([f.log_predict(**flat) for f in self.fits])
        w = np.asarray(self.weights)[:, None]
        mean = np.sum(w * logs, axis=0)
        members = np.sqrt(np.sum(w * (logs - mean) ** 2, axis=0))
        boots = [f.log_predict_bootstrap(**flat) for f in self.fits]
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

        Log-normal with standard deviation ``interval_scale`` · √(bootstrap parameter variance
        + run-to-run scatter² + (growth · ln x)²), x the extrapolation factor. Without a
        bootstrap the parameter term is left out (the fit says so in its reasons).
        """
        if not 0 < level < 1:
            raise BacktestError(f"level must lie in (0, 1), got {level!r}", field="level")
        flat, shape = _flat_inputs(inputs)
        s = self._sigma(flat)
        par = np.nan_to_num(s["parameters"], nan=0.0)
        # The members' disagreement is not added: the growth term is measured on the combined
        # prediction's own inner backtest, which already holds whatever error it causes.
        sd = self.interval_scale * np.sqrt(par**2 + s["scatter"] ** 2 + s["extrapolation"] ** 2)
        z = float(ndtri(0.5 + level / 2))
        lo = np.exp(s["mean"] - z * sd).reshape(shape)
        hi = np.exp(s["mean"] + z * sd).reshape(shape)
        if lo.ndim == 0:
            return float(lo), float(hi)
        return lo, hi

    def uncertainty(self, **inputs: ArrayLike) -> dict[str, np.ndarray]:
        """The log-space standard deviations the interval adds up, by source (before
        ``interval_scale``)."""
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
            preds = np.exp(law.log_predict_at(raw, flat))
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
            "interval_scale": self.interval_scale,
            "inner_errors": dict(self.inner_errors),
            "inner_cuts_flops": list(self.inner_cuts_flops),
            "allocation": None if self.planner is None else self.planner.to_dict(),
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
    planner: bool = True,
    schedule: str | None = None,
) -> ProcedureFit:
    """Fit ``runs`` with a named procedure, with its uncertainty model and verdict.

    Parameters
    ----------
    procedure:
        A name of :data:`scalinglab.procedures.PROCEDURES` (``"plain"`` is the published
        recipe, what ``scalinglab fit`` does without one; ``"auto"`` chooses by a backtest
        inside ``runs``) or a :class:`~scalinglab.procedures.Procedure`.
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
    planner:
        Choose the fit that splits budgets (:attr:`ProcedureFit.planner`). False skips it (and
        its extra fits) when only loss is wanted; planning from the result then refuses.
    schedule:
        With a curve procedure (``curves``): the runs' learning-rate schedule, ``"decay"``,
        ``"constant"`` or ``"shared"`` (default: the ``schedule`` column, else ``"decay"``);
        see :mod:`scalinglab.procedures.curves`.

    Returns
    -------
    ProcedureFit
    """
    table = as_runs(runs)
    proc = get_procedure(procedure)
    curve_notes: list[str] = []
    if proc.curves:
        # Before everything else, so that the inner backtest, the fits and the scatter all see
        # the same valid, weighted points.
        table, curve_notes = curve_points(
            table,
            schedule=schedule,
            early_fraction=proc.early_fraction,
            max_points=proc.max_curve_points,
        )
    elif schedule is not None:
        raise ProcedureError(
            f"schedule applies to a curve procedure (curves), not to {proc.name!r}",
            field="schedule",
        )
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
    if curve_notes:
        why += "; " + "; ".join(curve_notes)
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
        weights = member_weights(chosen, member_err)
    else:
        weights = np.array([1.0])
    # Run-to-run scatter on the runs the members trust (their union).
    trusted_mask = np.zeros(len(table), dtype=bool)
    for m in members:
        trusted_mask |= trust_mask(m, table)[0]
    trusted = table.subset(trusted_mask)
    logs = np.sum(
        [w * f.log_predict(**runs_inputs(trusted)) for w, f in zip(weights, fits, strict=True)],
        axis=0,
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
        reasons.extend(exponent_reasons(f.law, f.params, f.diagnostics.get("procedure", f.law)))
    if inner is None:
        reasons.append(
            "no backtest inside the runs was possible, so the extrapolation error is unknown"
        )
    # The fit that splits budgets between N and D (procedures.allocation): loss is not enough.
    chosen_planner = None
    if planner:
        inner_errors = {} if inner is None else inner.errors
        chosen_planner = planner_for(
            proc,
            fits,
            weights,
            table,
            bootstrap=bootstrap,
            seed=seed,
            inner_errors=inner_errors,
            n_jobs=n_jobs,
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
        planner=chosen_planner,
        interval_scale=proc.interval_scale,
    )
    if target:
        v = result.assess(**target)
        result = replace(result, reliable=v.reliable, reasons=v.reasons)
    return result
