"""Power laws y = k·C^e fitted by least squares in log-log space, with percentile bootstrap CIs:
the last step that both approaches share (N_opt(C) and D_opt(C) from their optima)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN


@dataclass(frozen=True)
class PowerLawFit:
    """y = coefficient · C^exponent, fitted by least squares on log y against log C."""

    exponent: float
    coefficient: float
    ci: Mapping[str, tuple[float, float]] | None = None

    def __call__(self, flops: float | np.ndarray) -> float | np.ndarray:
        out = self.coefficient * np.asarray(flops, dtype=float) ** self.exponent
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        return {
            "exponent": self.exponent,
            "coefficient": self.coefficient,
            "ci": None if self.ci is None else {k: list(v) for k, v in self.ci.items()},
        }


def loglog(flops: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Exponent and coefficient of values = k·flops^e by least squares in log-log space."""
    x, y = np.log(flops), np.log(values)
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(math.exp(intercept))


def _slopes(
    x: np.ndarray, y: np.ndarray, ok: np.ndarray, *, require_trend: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise least-squares slope and exp(intercept) of ``y`` on ``x`` over the entries where
    ``ok`` (others weigh nothing); NaN where a row has fewer than two points, no spread in x,
    or, with ``require_trend``, no trend at all."""
    w = ok.astype(float)
    y = np.where(ok, y, 0.0)
    n = w.sum(axis=1)
    mx = (w * x).sum(axis=1) / np.maximum(n, 1)
    my = (w * y).sum(axis=1) / np.maximum(n, 1)
    sxx = (w * (x - mx[:, None]) ** 2).sum(axis=1)
    sxy = (w * (x - mx[:, None]) * (y - my[:, None])).sum(axis=1)
    fitted = (n >= 2) & (sxx > 0)
    if require_trend:
        fitted &= np.abs(sxy) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(fitted, sxy / sxx, np.nan)
    return slope, np.exp(my - slope * mx)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central percentile interval at ``level``, NaN resamples ignored."""
    lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def loglog_batch(flops: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise :func:`loglog` for values ``[K, m]`` (NaN entries ignored)."""
    y = np.log(values)
    return _slopes(np.log(flops)[None, :], y, np.isfinite(y))


def power_fits(
    flops: np.ndarray,
    params_opt: np.ndarray,
    boot_flops: np.ndarray | None,
    boot_params: np.ndarray | None,
    level: float,
) -> tuple[PowerLawFit, PowerLawFit, int]:
    tokens_opt = flops / (FLOPS_PER_PARAM_TOKEN * params_opt)
    a, k_n = loglog(flops, params_opt)
    b, k_d = loglog(flops, tokens_opt)
    ci_n = ci_d = None
    failed = 0
    if boot_params is not None and boot_flops is not None:
        bt = boot_flops[None, :] / (FLOPS_PER_PARAM_TOKEN * boot_params)
        sa, sk = loglog_batch(boot_flops, boot_params)
        sb, skd = loglog_batch(boot_flops, bt)
        failed = int(np.sum(~np.isfinite(sa)))
        ci_n = {"exponent": _interval(sa, level), "coefficient": _interval(sk, level)}
        ci_d = {"exponent": _interval(sb, level), "coefficient": _interval(skd, level)}
    return PowerLawFit(a, k_n, ci_n), PowerLawFit(b, k_d, ci_d), failed


def power_fits_rows(
    flops: np.ndarray,
    params_opt: np.ndarray,
    boot_flops: np.ndarray | None,
    boot_params: np.ndarray | None,
    level: float,
) -> tuple[PowerLawFit, PowerLawFit, int]:
    """:func:`power_fits` where every resample has its own FLOP values ``[K, m]``."""
    fit_n, fit_d, _ = power_fits(flops, params_opt, None, None, level)
    if boot_flops is None or boot_params is None:
        return fit_n, fit_d, 0
    x = np.log(boot_flops)
    ok = np.isfinite(x) & np.isfinite(boot_params)
    x = np.where(ok, x, 0.0)
    slopes = {}
    for name, values in (
        ("n", boot_params),
        ("d", boot_flops / (FLOPS_PER_PARAM_TOKEN * boot_params)),
    ):
        slopes[name] = _slopes(x, np.log(np.where(ok, values, 1.0)), ok, require_trend=True)
    failed = int(np.sum(~np.isfinite(slopes["n"][0])))
    fit_n, fit_d = (
        PowerLawFit(
            fit.exponent,
            fit.coefficient,
            {
                "exponent": _interval(slopes[name][0], level),
                "coefficient": _interval(slopes[name][1], level),
            },
        )
        for name, fit in (("n", fit_n), ("d", fit_d))
    )
    return fit_n, fit_d, failed
