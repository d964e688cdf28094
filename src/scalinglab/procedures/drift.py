"""The drift of a recipe's extrapolation error with scale, measured inside the fitted runs.

The inner backtest (:mod:`scalinglab.procedures.inner`) fits a recipe below C_max/2, /4, /8 and
records its *signed* log errors on the runs above, with their extrapolation factors x. A recipe
that is systematically too high (or too low) further out shows it there as errors that grow with
ln x: GPT-3's small models over-predict the larger ones more the larger they are. A drift
correction fits that growth,

    signed log error = b · ln x,

and subtracts it from the log prediction at the target's factor X: ``log L̂ − b̃ · ln X``.

Why this form, from first principles (nothing here was tuned on the extrapolation suite):

- **Through the origin.** At x = 1 the fit interpolates: its error there is the scatter, not a
  bias to carry along (an intercept would shift every prediction, interpolations included).
- **Linear in ln x.** The growth term of the intervals (``growth · ln x``) already assumes it;
  one parameter is all three nested origins can identify.
- **Robust.** A Huber M-estimate (the usual 1.345 · scale, 95 % efficiency under normal errors),
  its scale the MAD of the residuals: an outlier among the inner test runs must not set the
  slope that is then extrapolated 100×.
- **Errors of one inner cut are one sample.** They share one fit, so its parameter error moves
  them together. The slope's standard error is the cluster-robust one, cuts as clusters (with
  the G/(G−1) small-sample factor), never below the independent-errors one; with a single
  usable cut there is no error to speak of and no correction. The nested cuts share runs too,
  so this standard error is still optimistic: another reason to shrink.
- **New runs only.** The target of an extrapolation is a new, larger run. A later checkpoint of a
  run whose earlier checkpoints were fitted (training curves) is a continuation along that run's
  own learning-rate schedule: its error drifts with how the schedule decays, not with scale
  (inside GPT-3's curves of the models ≤ 1.3B, plain's inner errors grow by 3.5 % per e-fold,
  every one a continuation; its errors on the new, larger models grow by under 1 %). Those
  errors still count in the interval's growth, not in the slope.
- **Shrunk by its own uncertainty.** An empirical-Bayes posterior mean under a prior b ~ N(0, τ²)
  with τ² estimated by moments (E[b̂²] = τ² + se²): b̃ = b̂ · max(0, 1 − se²/b̂²). A slope within
  one standard error of 0 is not applied at all; a well-measured one almost fully. Its posterior
  variance, shrink · se² per e-fold², joins the prediction interval, and the interval's growth is
  re-measured on the corrected inner errors.

What it assumes: that the fit of all the runs drifts as the inner fits did. That holds for a bias
the recipe keeps however many runs it sees (off-optimal runs that the law does not describe,
pulling every fit the same way); it fails for a change of regime inside the fitted range, which
the fit of all the runs has partly absorbed and the inner fits, seeing less of it, have not: then
the correction overshoots (README, "The extrapolation suite").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalinglab.procedures.inner import extrapolation_growth

__all__ = ["HUBER_K", "Drift", "estimate_drift"]

# Huber's constant in units of the residuals' robust scale: 95 % efficiency under normal errors.
HUBER_K = 1.345
_IRLS_STEPS = 50


@dataclass(frozen=True)
class Drift:
    """A recipe's signed extrapolation error per e-fold of extrapolation factor, as measured
    by its inner backtest, and the correction made of it.

    Attributes
    ----------
    slope:
        b̂, the robust slope of signed log error on ln x (log error per e-fold).
    se:
        Its cluster-robust standard error (inf when fewer than two inner cuts were usable).
    shrink:
        max(0, 1 − se²/b̂²): the share of the slope that is applied.
    n_points, n_cuts:
        Inner predictions beyond the fitted runs, and the inner cuts they come from.
    growth:
        The extrapolation growth (log error per e-fold, beyond the scatter) of the corrected
        inner errors, with the correction's own uncertainty added in quadrature.
    """

    slope: float
    se: float
    shrink: float
    n_points: int
    n_cuts: int
    growth: float

    @property
    def per_efold(self) -> float:
        """The applied correction b̃ = shrink · b̂ (log error per e-fold; subtracted)."""
        return self.shrink * self.slope if math.isfinite(self.slope) else 0.0

    @property
    def sd(self) -> float:
        """Posterior standard deviation of the drift per e-fold: √(shrink) · se."""
        return math.sqrt(self.shrink) * self.se if self.shrink > 0 else 0.0

    def describe(self) -> str:
        """One clause for a fit's ``why``."""
        if not math.isfinite(self.slope):
            return "no drift correction (no inner prediction of a new run beyond the fitted runs)"
        return (
            f"drift of the inner errors {self.slope:+.4f} ± {self.se:.4f} per e-fold of "
            f"extrapolation ({self.n_points} predictions, {self.n_cuts} inner cuts): "
            f"{self.per_efold:+.4f} per e-fold corrected (shrunk ×{self.shrink:.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "slope_per_efold": self.slope,
            "se": self.se,
            "shrink": self.shrink,
            "applied_per_efold": self.per_efold,
            "sd_per_efold": self.sd,
            "n_points": self.n_points,
            "n_cuts": self.n_cuts,
            "growth_per_efold": self.growth,
        }


def _huber_slope(lx: np.ndarray, e: np.ndarray) -> tuple[float, np.ndarray]:
    """Huber M-estimate of b in e = b · lx (IRLS), and the final weights."""
    # Written here because the libraries at hand do not do it whole: scipy's least_squares
    # takes a Huber loss at a fixed scale (this one re-estimates the scale by the MAD each
    # step), and statsmodels' RLM would be a new dependency for one through-the-origin slope.
    b = float(np.sum(lx * e) / np.sum(lx**2))
    w = np.ones_like(e)
    for _ in range(_IRLS_STEPS):
        r = e - b * lx
        scale = 1.4826 * float(np.median(np.abs(r - np.median(r))))
        if not scale > 0:
            break
        u = np.abs(r) / (HUBER_K * scale)
        w = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-300))
        new = float(np.sum(w * lx * e) / np.sum(w * lx**2))
        if abs(new - b) <= 1e-10 * max(abs(b), 1e-12):
            b = new
            break
        b = new
    return b, w


def estimate_drift(
    log_errors: np.ndarray,
    factors: np.ndarray,
    cut_ids: np.ndarray,
    scatter: float,
    continued: np.ndarray | None = None,
) -> Drift:
    """The drift of signed inner errors with the extrapolation factor (see the module docstring).

    Parameters
    ----------
    log_errors:
        Signed log errors (predicted − observed) of one procedure's inner predictions.
    factors:
        Their extrapolation factors (compute over the largest compute fitted at that cut).
    cut_ids:
        Which inner cut each comes from (the clusters of the standard error).
    scatter:
        The run-to-run scatter of the log residuals (for the corrected growth).
    continued:
        Which errors are continuations of a fitted run (left out of the slope; default none).
    """
    e_all = np.asarray(log_errors, dtype=float)
    x_all = np.asarray(factors, dtype=float)
    g = np.asarray(cut_ids)
    ok = np.isfinite(e_all) & (x_all > 1)
    if continued is not None:
        ok &= ~np.asarray(continued, dtype=bool)
    e, lx, g = e_all[ok], np.log(x_all[ok]), g[ok]
    clusters = np.unique(g)
    if e.size == 0:
        growth = extrapolation_growth(e_all, x_all, scatter)
        return Drift(math.nan, math.inf, 0.0, 0, 0, growth)
    b, w = _huber_slope(lx, e)
    r = e - b * lx
    if clusters.size >= 2:
        info = float(np.sum(w * lx**2))
        # Sandwich with cuts as clusters: each cut's score Σ w·lx·r is one draw.
        scores = np.array([np.sum((w * lx * r)[g == c]) for c in clusters])
        k = clusters.size
        clustered = k / (k - 1) * float(np.sum(scores**2)) / info**2
        # With two or three clusters the sandwich is itself a noisy estimate (≤ 2 degrees of
        # freedom) and can be far too small by chance. Errors that share a fit are positively
        # correlated, never less variable than independent ones: the independent-errors
        # variance, estimated from every residual, is a floor that is stable.
        scale = 1.4826 * float(np.median(np.abs(r - np.median(r))))
        independent = scale**2 * float(np.sum((w * lx) ** 2)) / info**2
        se = math.sqrt(max(clustered, independent))
    else:
        se = math.inf
    shrink = max(0.0, 1.0 - se**2 / b**2) if b != 0 and math.isfinite(se) else 0.0
    drift = Drift(b, se, shrink, int(e.size), int(clusters.size), math.nan)
    # Every inner error, corrected, measures the corrected recipe's growth (as the base's does).
    lx_all = np.log(np.maximum(x_all, 1.0))
    corrected = extrapolation_growth(e_all - drift.per_efold * lx_all, x_all, scatter)
    growth = math.sqrt(corrected**2 + drift.sd**2) if math.isfinite(corrected) else math.nan
    return Drift(b, se, shrink, int(e.size), int(clusters.size), growth)
