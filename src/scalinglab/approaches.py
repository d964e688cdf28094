"""Approaches 1 and 2 of Hoffmann et al. (2022): compute-optimal N and D without a loss law.

Approach 1, :func:`envelope`: for each compute C, the run reaching the lowest loss at C (from
training curves, or from final losses when each run has one row) gives N_opt(C); power laws
N_opt = k_N·C^a and D_opt = k_D·C^b are fitted to those points in log-log space.

Approach 2, :func:`isoflop`: runs at a fixed compute budget form an IsoFLOP profile; a parabola of
the loss in log N gives the profile's minimum N_opt(C), and power laws are fitted across
budgets. A budget whose lowest loss sits at the smallest or largest size tested has no minimum
inside its range; it is refused with a message naming the sizes to add, not fitted.

Both give percentile bootstrap CIs on a, b and the coefficients, by resampling runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.fitting import FitError
from scalinglab.runs import Runs, as_runs

__all__ = [
    "ApproachError",
    "ApproachResult",
    "PowerLawFit",
    "envelope",
    "isoflop",
    "isoflop_points",
]


class ApproachError(FitError):
    """An approach cannot be applied to these runs (too few budgets, edge minima, ...)."""


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


@dataclass(frozen=True)
class ApproachResult:
    """Compute-optimal allocation from Approach 1 (``"envelope"``) or 2 (``"isoflop"``).

    ``points`` has one row per optimum found: ``flops``, ``params_opt``, ``tokens_opt``,
    ``loss_opt`` (and, for IsoFLOP, ``n_runs`` and ``curvature`` of each parabola).
    """

    approach: str
    params_opt: PowerLawFit
    tokens_opt: PowerLawFit
    points: pd.DataFrame
    refused: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    bootstrap: int = 0
    ci_level: float = 0.95
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a."""
        return self.params_opt.exponent

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b."""
        return self.tokens_opt.exponent

    def allocate(self, flops: float | np.ndarray) -> tuple[Any, Any]:
        """(N_opt, D_opt) at ``flops`` from the fitted power laws."""
        return self.params_opt(flops), self.tokens_opt(flops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "approach": self.approach,
            "a": self.a,
            "b": self.b,
            "params_opt": self.params_opt.to_dict(),
            "tokens_opt": self.tokens_opt.to_dict(),
            "points": self.points.to_dict(orient="records"),
            "refused": list(self.refused),
            "warnings": list(self.warnings),
            "bootstrap": self.bootstrap,
            "ci_level": self.ci_level,
            "details": dict(self.details),
        }


# ---------------------------------------------------------------------------------------------
# shared


def _select_group(runs: Runs | pd.DataFrame | str | Path, group: str | None) -> Runs:
    """The runs of ``group``; refused when the runs hold several groups and none is chosen."""
    table = as_runs(runs)
    if "group" in table.frame.columns:
        groups = pd.unique(table.frame["group"])
        if group is not None:
            if group not in set(groups):
                raise ApproachError(
                    f"group {group!r} is not in the runs; groups: {', '.join(map(str, groups[:8]))}"
                    + (" ..." if len(groups) > 8 else ""),
                    field="group",
                )
            table = table.subset(table.frame["group"] == group, f"group {group}")
        elif len(groups) > 1:
            raise ApproachError(
                f"the runs hold {len(groups)} groups (recipes or data sets), whose optima differ: "
                f"choose one with group=..., e.g. {groups[0]!r}",
                field="group",
            )
    elif group is not None:
        raise ApproachError(
            f"group={group!r} given, but the runs table has no 'group' column", field="group"
        )
    return table


def _loglog(flops: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Exponent and coefficient of values = k·flops^e by least squares in log-log space."""
    x, y = np.log(flops), np.log(values)
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(math.exp(intercept))


def _loglog_batch(flops: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise :func:`_loglog` for values ``[K, m]`` (NaN entries ignored)."""
    x = np.log(flops)[None, :]
    y = np.log(values)
    ok = np.isfinite(y)
    w = ok.astype(float)
    y = np.where(ok, y, 0.0)
    n = w.sum(axis=1)
    mx = (w * x).sum(axis=1) / np.maximum(n, 1)
    my = (w * y).sum(axis=1) / np.maximum(n, 1)
    sxx = (w * (x - mx[:, None]) ** 2).sum(axis=1)
    sxy = (w * (x - mx[:, None]) * (y - my[:, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where((n >= 2) & (sxx > 0), sxy / sxx, np.nan)
    return slope, np.exp(my - slope * mx)


def _power_fits(
    flops: np.ndarray,
    params_opt: np.ndarray,
    boot_flops: np.ndarray | None,
    boot_params: np.ndarray | None,
    level: float,
) -> tuple[PowerLawFit, PowerLawFit, int]:
    tokens_opt = flops / (FLOPS_PER_PARAM_TOKEN * params_opt)
    a, k_n = _loglog(flops, params_opt)
    b, k_d = _loglog(flops, tokens_opt)
    ci_n = ci_d = None
    failed = 0
    if boot_params is not None and boot_flops is not None:
        bt = boot_flops[None, :] / (FLOPS_PER_PARAM_TOKEN * boot_params)
        sa, sk = _loglog_batch(boot_flops, boot_params)
        sb, skd = _loglog_batch(boot_flops, bt)
        failed = int(np.sum(~np.isfinite(sa)))
        q = [50 * (1 - level), 50 * (1 + level)]

        def pct(v: np.ndarray) -> tuple[float, float]:
            lo, hi = np.nanpercentile(v, q)
            return float(lo), float(hi)

        ci_n = {"exponent": pct(sa), "coefficient": pct(sk)}
        ci_d = {"exponent": pct(sb), "coefficient": pct(skd)}
    return PowerLawFit(a, k_n, ci_n), PowerLawFit(b, k_d, ci_d), failed


# ---------------------------------------------------------------------------------------------
# Approach 2: IsoFLOP profiles


def _levels(flops: np.ndarray, rtol: float) -> np.ndarray:
    """Label runs by compute level: sorted log-FLOPs split where the gap exceeds log(1 + rtol)."""
    order = np.argsort(flops, kind="stable")
    logs = np.log(flops[order])
    breaks = np.concatenate([[0], np.cumsum(np.diff(logs) > math.log1p(rtol))])
    labels = np.empty(len(flops), dtype=int)
    labels[order] = breaks
    return labels


def _suggest(sizes: np.ndarray, side: str) -> str:
    ratio = float(np.median(np.diff(np.log(sizes)))) if len(sizes) > 1 else math.log(2.0)
    ratio = math.exp(max(ratio, math.log(1.5)))
    if side == "smallest":
        extra = [sizes[0] / ratio, sizes[0] / ratio**2]
    else:
        extra = [sizes[-1] * ratio, sizes[-1] * ratio**2]
    return ", ".join(f"{v:.3g}" for v in extra)


def _parabola_batch(
    x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares parabolas y = c0 + c1·x + c2·x² for weights ``[K, m]``.

    Returns the vertex x*, the fitted minimum, and the curvature c2 (NaN where singular).
    """
    design = np.stack([np.ones_like(x), x, x * x], axis=1)  # [m, 3]
    xtwx = np.einsum("mi,km,mj->kij", design, w, design)
    xtwy = np.einsum("mi,km,m->ki", design, w, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        try:
            coef = np.linalg.solve(xtwx, xtwy[..., None])[..., 0]
        except np.linalg.LinAlgError:
            coef = np.stack(
                [np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(xtwx, xtwy, strict=True)]
            )
        c0, c1, c2 = coef[:, 0], coef[:, 1], coef[:, 2]
        vertex = -c1 / (2 * c2)
        low = c0 - c1 * c1 / (4 * c2)
    bad = ~(c2 > 0)
    return np.where(bad, np.nan, vertex), np.where(bad, np.nan, low), c2


def isoflop_points(
    runs: Runs | pd.DataFrame | str | Path,
    *,
    group: str | None = None,
    window: int | None = 2,
    level_rtol: float = 0.05,
    min_sizes: int = 3,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The IsoFLOP minimum of each compute level of ``runs``, and the levels refused.

    The first step of :func:`isoflop` (see it for the parameters), without the power laws: one
    row per level whose optimum lies inside the sizes tested (``flops``, ``params_opt``,
    ``tokens_opt``, ``loss_opt``, ``n_runs``, ``curvature``), so that even one budget is a
    measurement (a held-out budget's optimum, say).

    Raises
    ------
    ApproachError
        Bad ``window``; several groups and none chosen.
    """
    points, refused, _ = _isoflop_levels(runs, group, window, level_rtol, min_sizes, 0, 0)
    return points, refused


def _isoflop_levels(
    runs: Runs | pd.DataFrame | str | Path,
    group: str | None,
    window: int | None,
    level_rtol: float,
    min_sizes: int,
    bootstrap: int,
    seed: int,
) -> tuple[pd.DataFrame, tuple[str, ...], np.ndarray | None]:
    """:func:`isoflop_points`, and with ``bootstrap`` the resampled minima (``[B, levels]``)."""
    if window is not None and window < 1:
        raise ApproachError(f"window must be >= 1 or None, got {window!r}", field="window")
    table = _select_group(runs, group)
    fr = table.frame
    flops = fr["flops"].to_numpy()
    labels = _levels(flops, level_rtol) if len(flops) else np.zeros(0, dtype=int)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    refused: list[str] = []
    boot_cols: list[np.ndarray] = []
    for lab in np.unique(labels):
        sel = np.flatnonzero(labels == lab)
        same = np.ptp(flops[sel]) == 0  # a designed sweep: report its budget exactly
        level_flops = float(flops[sel][0] if same else np.exp(np.mean(np.log(flops[sel]))))
        sizes_all = fr["params"].to_numpy()[sel]
        loss_all = fr["loss"].to_numpy()[sel]
        order = np.argsort(sizes_all, kind="stable")
        sizes_all, loss_all = sizes_all[order], loss_all[order]
        distinct = np.unique(sizes_all)
        where = f"compute level {level_flops:.3g} FLOP"
        if len(distinct) < min_sizes:
            refused.append(
                f"{where}: {len(distinct)} sizes, need at least {min_sizes}; add sizes around "
                f"{np.median(distinct):.3g} params"
            )
            continue
        i_min = int(np.argmin(loss_all))
        n_min = sizes_all[i_min]
        if n_min == distinct[0] or n_min == distinct[-1]:
            side = "smallest" if n_min == distinct[0] else "largest"
            direction = "below" if side == "smallest" else "above"
            refused.append(
                f"{where}: the lowest loss is at the {side} size ({n_min:.3g} params), so the "
                f"optimum may lie {direction} the sizes tested; add sizes {direction} it, e.g. "
                f"{_suggest(distinct, side)} params"
            )
            continue
        if window is not None:
            k = int(np.searchsorted(distinct, n_min))
            keep_sizes = distinct[max(0, k - window) : k + window + 1]
            use = np.isin(sizes_all, keep_sizes)
        else:
            use = np.ones(len(sizes_all), dtype=bool)
        x = np.log(sizes_all[use])
        y = loss_all[use]
        centre = float(np.mean(x))
        xc = x - centre
        vertex, low, curv = _parabola_batch(xc, y, np.ones((1, len(xc))))
        if not np.isfinite(vertex[0]) or not (xc.min() <= vertex[0] <= xc.max()):
            refused.append(
                f"{where}: the parabola through sizes {sizes_all[use].min():.3g} to "
                f"{sizes_all[use].max():.3g} params has no minimum inside them; add sizes "
                f"around {n_min:.3g} params"
            )
            continue
        n_opt = float(np.exp(vertex[0] + centre))
        rows.append(
            {
                "flops": level_flops,
                "params_opt": n_opt,
                "tokens_opt": level_flops / (FLOPS_PER_PARAM_TOKEN * n_opt),
                "loss_opt": float(low[0]),
                "n_runs": int(use.sum()),
                "curvature": float(curv[0]),
            }
        )
        if bootstrap:
            m = int(use.sum())
            counts = rng.multinomial(m, np.full(m, 1.0 / m), size=bootstrap).astype(float)
            bv, _, _ = _parabola_batch(xc, y, counts)
            # A resample whose vertex leaves the sizes it was fitted on has no optimum there.
            bv = np.where((bv >= xc.min()) & (bv <= xc.max()), bv, np.nan)
            boot_cols.append(np.exp(bv + centre))
    points = pd.DataFrame(
        rows,
        columns=["flops", "params_opt", "tokens_opt", "loss_opt", "n_runs", "curvature"],
    )
    boot = np.stack(boot_cols, axis=1) if bootstrap and boot_cols else None
    return points, tuple(refused), boot


def isoflop(
    runs: Runs | pd.DataFrame | str | Path,
    *,
    group: str | None = None,
    window: int | None = 2,
    level_rtol: float = 0.05,
    min_sizes: int = 3,
    on_edge: str = "raise",
    bootstrap: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
) -> ApproachResult:
    """Approach 2 of Hoffmann et al. (2022): IsoFLOP parabolas, then power laws in C.

    Parameters
    ----------
    runs:
        Runs at a few compute budgets, several model sizes each.
    group:
        Which group (recipe, data set) to use when the table holds several.
    window:
        Fit each parabola to the lowest-loss size and up to ``window`` sizes on either side
        (None: every size, as Hoffmann et al.). Far from the minimum the loss is not parabolic
        in log N, and sweeps that span decades of N (Porian et al. 2024) bias a global fit.
    level_rtol:
        Runs whose FLOPs differ by less than this fraction belong to one compute level.
    min_sizes:
        Fewest distinct sizes a level needs.
    on_edge:
        What to do with a level whose lowest loss is at its smallest or largest size, or whose
        parabola has no minimum: ``"raise"`` (default) or ``"skip"`` (listed in ``refused``).
    bootstrap:
        Resamples (runs resampled within each level) for percentile CIs.
    seed, ci_level:
        Seed and level of the bootstrap.

    Raises
    ------
    ApproachError
        Edge minima (with ``on_edge="raise"``), fewer than two usable levels, several groups.
    """
    if on_edge not in ("raise", "skip"):
        raise ApproachError(f"on_edge must be 'raise' or 'skip', got {on_edge!r}", field="on_edge")
    points, refused, boot_params = _isoflop_levels(
        runs, group, window, level_rtol, min_sizes, bootstrap, seed
    )
    rows = points.to_dict(orient="records")
    if refused and on_edge == "raise":
        raise ApproachError("; ".join(refused))
    if len(rows) < 2:
        raise ApproachError(
            f"need at least two compute levels with an interior minimum, got {len(rows)}"
            + (f" ({'; '.join(refused)})" if refused else "")
        )
    c = points["flops"].to_numpy()
    fit_n, fit_d, failed = _power_fits(
        c, points["params_opt"].to_numpy(), c if bootstrap else None, boot_params, ci_level
    )
    notes = []
    if len(rows) < 3:
        notes.append(f"only {len(rows)} compute levels: the exponents rest on two points")
    if refused:
        notes.append(f"{len(refused)} compute levels refused (see refused)")
    if bootstrap and failed:
        notes.append(f"{failed} of {bootstrap} bootstrap resamples had too few levels")
    return ApproachResult(
        approach="isoflop",
        params_opt=fit_n,
        tokens_opt=fit_d,
        points=points,
        refused=tuple(refused),
        warnings=tuple(notes),
        bootstrap=int(bootstrap),
        ci_level=ci_level,
        details={"window": window, "level_rtol": level_rtol, "n_levels": len(rows)},
    )


# ---------------------------------------------------------------------------------------------
# Approach 1: envelope of training curves


def _run_labels(fr: pd.DataFrame) -> np.ndarray:
    if "run_id" in fr.columns:
        return pd.factorize(fr["run_id"])[0]
    return np.arange(len(fr))


def _envelope_points(
    fr: pd.DataFrame, labels: np.ndarray, weights: np.ndarray | None, grid_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(flops, params_opt) along the lower envelope of loss against compute."""
    runs = np.unique(labels if weights is None else labels[weights[labels] > 0])
    flops = fr["flops"].to_numpy()
    loss = fr["loss"].to_numpy()
    params = fr["params"].to_numpy()
    curves = [np.flatnonzero(labels == r) for r in runs]
    if all(len(c) == 1 for c in curves):
        # One row per run: the envelope is the set of runs no cheaper run beats.
        idx = np.array([c[0] for c in curves])
        idx = idx[np.lexsort((loss[idx], flops[idx]))]
        best = np.minimum.accumulate(loss[idx])
        front = idx[np.concatenate([[True], loss[idx][1:] < best[:-1]])]
        return flops[front], params[front]
    lo = min(flops[c].min() for c in curves)
    hi = max(flops[c].max() for c in curves)
    grid = np.geomspace(lo, hi, grid_size)
    best_loss = np.full(grid_size, np.inf)
    best_params = np.full(grid_size, np.nan)
    for c in curves:
        order = c[np.argsort(flops[c], kind="stable")]
        f, lval = flops[order], loss[order]
        inside = (grid >= f[0]) & (grid <= f[-1])
        if not inside.any():
            continue
        interp = np.exp(np.interp(np.log(grid[inside]), np.log(f), np.log(lval)))
        better = interp < best_loss[inside]
        where = np.flatnonzero(inside)[better]
        best_loss[where] = interp[better]
        best_params[where] = params[order[0]]
    ok = np.isfinite(best_params)
    return grid[ok], best_params[ok]


def envelope(
    runs: Runs | pd.DataFrame | str | Path,
    *,
    group: str | None = None,
    grid_size: int = 1500,
    bootstrap: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
) -> ApproachResult:
    """Approach 1 of Hoffmann et al. (2022): the lower envelope of loss against compute.

    With training curves (rows sharing a ``run_id``, one per checkpoint, ``flops`` counting
    the compute spent up to it), each run's loss is interpolated in log-log on ``grid_size``
    log-spaced FLOP values (1500, as Hoffmann et al.) and the lowest run at each value gives
    N_opt(C). With one row per run, the envelope is the runs that no cheaper run beats.

    Raises
    ------
    ApproachError
        Fewer than three envelope points, several groups.
    """
    table = _select_group(runs, group)
    fr = table.frame
    labels = _run_labels(fr)
    c, n_opt = _envelope_points(fr, labels, None, grid_size)
    if len(np.unique(n_opt)) < 2 or len(c) < 3:
        raise ApproachError(
            f"the envelope has {len(c)} points on {len(np.unique(n_opt))} model sizes; it needs "
            "runs of at least two sizes that each lead at some compute"
        )
    boot_c = boot_n = None
    notes: list[str] = []
    if bootstrap:
        rng = np.random.default_rng(seed)
        n_runs = int(labels.max()) + 1
        slopes = []
        for _ in range(bootstrap):
            counts = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs))
            bc, bn = _envelope_points(fr, labels, counts, grid_size)
            slopes.append((bc, bn))
        # Resamples give envelopes on different FLOP values: fit each on its own points.
        size = max(len(s[0]) for s in slopes)
        boot_c_rows = np.full((bootstrap, size), np.nan)
        boot_n = np.full((bootstrap, size), np.nan)
        for i, (bc, bn) in enumerate(slopes):
            boot_c_rows[i, : len(bc)] = bc
            boot_n[i, : len(bn)] = bn
        boot_c = boot_c_rows
    fit_n, fit_d, failed = _power_fits_rows(c, n_opt, boot_c, boot_n, ci_level)
    if bootstrap and failed:
        notes.append(f"{failed} of {bootstrap} resamples left an envelope of a single size")
    points = pd.DataFrame(
        {
            "flops": c,
            "params_opt": n_opt,
            "tokens_opt": c / (FLOPS_PER_PARAM_TOKEN * n_opt),
        }
    )
    return ApproachResult(
        approach="envelope",
        params_opt=fit_n,
        tokens_opt=fit_d,
        points=points,
        warnings=tuple(notes),
        bootstrap=int(bootstrap),
        ci_level=ci_level,
        details={"grid_size": grid_size, "n_sizes": len(np.unique(n_opt))},
    )


def _power_fits_rows(
    flops: np.ndarray,
    params_opt: np.ndarray,
    boot_flops: np.ndarray | None,
    boot_params: np.ndarray | None,
    level: float,
) -> tuple[PowerLawFit, PowerLawFit, int]:
    """:func:`_power_fits` where every resample has its own FLOP values ``[K, m]``."""
    fit_n, fit_d, _ = _power_fits(flops, params_opt, None, None, level)
    if boot_flops is None or boot_params is None:
        return fit_n, fit_d, 0
    x = np.log(boot_flops)
    ok = np.isfinite(x) & np.isfinite(boot_params)
    q = [50 * (1 - level), 50 * (1 + level)]
    out = {}
    for name, values in (
        ("n", boot_params),
        ("d", boot_flops / (FLOPS_PER_PARAM_TOKEN * boot_params)),
    ):
        y = np.where(ok, np.log(np.where(ok, values, 1.0)), 0.0)
        w = ok.astype(float)
        n = w.sum(axis=1)
        xs = np.where(ok, x, 0.0)
        mx = (w * xs).sum(axis=1) / np.maximum(n, 1)
        my = (w * y).sum(axis=1) / np.maximum(n, 1)
        sxx = (w * (xs - mx[:, None]) ** 2).sum(axis=1)
        sxy = (w * (xs - mx[:, None]) * (y - my[:, None])).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where((n >= 2) & (sxx > 0) & (np.abs(sxy) > 0), sxy / sxx, np.nan)
        out[name] = (slope, np.exp(my - slope * mx))
    failed = int(np.sum(~np.isfinite(out["n"][0])))

    def pct(v: np.ndarray) -> tuple[float, float]:
        lo, hi = np.nanpercentile(v, q)
        return float(lo), float(hi)

    fit_n = PowerLawFit(
        fit_n.exponent,
        fit_n.coefficient,
        {"exponent": pct(out["n"][0]), "coefficient": pct(out["n"][1])},
    )
    fit_d = PowerLawFit(
        fit_d.exponent,
        fit_d.coefficient,
        {"exponent": pct(out["d"][0]), "coefficient": pct(out["d"][1])},
    )
    return fit_n, fit_d, failed
