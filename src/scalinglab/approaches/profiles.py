"""Approach 2 of Hoffmann et al. (2022), IsoFLOP profiles: runs at one compute budget form a
profile, a parabola of the loss in log N gives its minimum N_opt(C), and power laws are fitted
across budgets. A budget whose minimum sits at an edge of the sizes tested is refused."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.approaches.powerlaw import power_fits
from scalinglab.approaches.result import ApproachError, ApproachResult, select_group
from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.runs import Runs


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
    table = select_group(runs, group)
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
    fit_n, fit_d, failed = power_fits(
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
