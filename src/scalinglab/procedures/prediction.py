"""The result of fitting a procedure, :class:`ProcedureFit`: its members, predictions,
prediction intervals, verdicts and JSON.

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

:func:`scalinglab.procedures.choice.fit_procedure` builds one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri  # the standard normal quantile; scipy.stats costs ~1 s to import

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.fitting import Fit
from scalinglab.procedures.allocation import AllocationError, Planner
from scalinglab.procedures.drift import Drift
from scalinglab.procedures.errors import BacktestError

__all__ = ["MAX_DISAGREEMENT", "MAX_PROJECTED_ERROR", "ProcedureFit", "Verdict"]

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
    curve_notes:
        A curve procedure's reading of the curves: how many points of how many runs it fitted,
        and what the schedule left out and why (see
        :func:`~scalinglab.procedures.curve_points`); empty for other procedures.
    drift:
        A drift-corrected procedure's correction (:mod:`~scalinglab.procedures.drift`): its
        log predictions are lowered by ``drift.per_efold · ln x`` beyond the fitted runs, and
        :attr:`growth` is the corrected one. None for the others. Only the predictions carry
        it: :attr:`fit` and the planner's fit are the uncorrected members (a correction in
        compute alone does not move an IsoFLOP optimum).
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
    curve_notes: tuple[str, ...] = ()
    drift: Drift | None = None

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
        if self.curve_notes:  # how the curves were read, kept with the fit (and its JSON)
            diagnostics["curves"] = {"points": self.n_runs, "notes": list(self.curve_notes)}
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

    def _log_factor(self, flat: Mapping[str, np.ndarray]) -> np.ndarray:
        """ln of the extrapolation factor in compute (0 within the fitted runs)."""
        return np.log(np.maximum(np.asarray(flat["flops"]) / self.max_fitted_flops, 1.0))

    def _drift(self, flat: Mapping[str, np.ndarray]) -> np.ndarray | float:
        """The drift correction to subtract from log predictions (0 without one)."""
        return 0.0 if self.drift is None else self.drift.per_efold * self._log_factor(flat)

    def log_predict(self, **inputs: ArrayLike) -> np.ndarray:
        """Weighted mean log prediction at ``inputs`` (flat), drift-corrected if the procedure
        is."""
        flat, _ = _flat_inputs(inputs)
        mean = np.sum(
            [w * f.log_predict(**flat) for w, f in zip(self.weights, self.fits, strict=True)],
            axis=0,
        )
        return mean - self._drift(flat)

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
        growth = 0.0 if not math.isfinite(self.growth) else self.growth
        log_factor = self._log_factor(flat)
        return {
            "mean": mean - self._drift(flat),
            "parameters": params,
            "members": members,
            "scatter": np.full(mean.shape, self.scatter),
            "extrapolation": growth * log_factor,
            "factor": np.exp(log_factor),
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
            "curve_notes": list(self.curve_notes),
            "drift": None if self.drift is None else self.drift.to_dict(),
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
