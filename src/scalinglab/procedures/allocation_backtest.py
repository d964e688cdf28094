"""The allocation backtest: plans made below a cut, against the optima measured above it.

Fit below a cut, plan at the budgets of the IsoFLOP profiles measured above it (Approach 2 of
Hoffmann et al. 2022), or read the optimum from a given column (e.g. Porian et al.'s
``N_opt_paper``), and record the error of the planned N_opt in decades; D_opt = C/(6·N_opt), so
its error in decades is the opposite. :func:`scalinglab.procedures.backtest` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.procedures.allocation import Planner, isoflop_minima, optimal_params
from scalinglab.procedures.errors import ProcedureError
from scalinglab.runs import Runs

__all__ = [
    "WITHIN_25",
    "allocation_rows",
    "allocation_summary",
    "measured_optima",
    "planner_columns",
]

# |log10 error| within which a planned N is within 25% of the measured one.
WITHIN_25 = math.log10(1.25)


def measured_optima(runs: Runs, optimum_column: str | None = None) -> pd.DataFrame:
    """Optimum N per budget of ``runs``: the given column (one value per budget) or the IsoFLOP
    minima (Approach 2). Columns ``flops``, ``params_opt``, ``source``."""
    if optimum_column is None:
        out = isoflop_minima(runs)
        return out.assign(source="isoflop")
    if optimum_column not in runs.frame.columns:
        raise ProcedureError(
            f"optimum column {optimum_column!r} is not a column of the runs table",
            field="optimum_column",
        )
    frame = runs.frame[["flops", optimum_column]].dropna()
    grouped = frame.groupby("flops", sort=True)[optimum_column].first().reset_index()
    grouped = grouped.rename(columns={optimum_column: "params_opt"})
    return grouped.assign(source=optimum_column)


def allocation_rows(
    planner: Planner,
    optima: pd.DataFrame,
    *,
    level: float = 0.9,
) -> list[dict[str, Any]]:
    """One row per measured optimum: planned N_opt and D_opt, the error in decades, whether the
    planner's bootstrap interval of N_opt (at ``level``) covered it. A procedure that refuses to
    plan gives rows with no plan and ``refused`` set."""
    if optima.empty:
        return []
    flops = optima["flops"].to_numpy(dtype=float)
    measured = optima["params_opt"].to_numpy(dtype=float)
    base = {"planner": planner.name, "source": optima["source"].iloc[0]}
    if planner.fit is None:
        return [
            {
                **base,
                "flops": c,
                "params_opt": n,
                "planned_params": math.nan,
                "planned_tokens": math.nan,
                "log10_error": math.nan,
                "lo": math.nan,
                "hi": math.nan,
                "covered": False,
                "refused": True,
            }
            for c, n in zip(flops, measured, strict=True)
        ]
    planned = optimal_params(planner.fit, flops)
    draws = optimal_params(planner.fit, flops, resamples=True)
    rows = []
    for i, (c, n) in enumerate(zip(flops, measured, strict=True)):
        col = draws[:, i][np.isfinite(draws[:, i])] if draws.size else np.zeros(0)
        lo, hi = (
            np.percentile(col, [50 * (1 - level), 50 * (1 + level)])
            if col.size >= 2
            else (math.nan, math.nan)
        )
        rows.append(
            {
                **base,
                "flops": float(c),
                "params_opt": float(n),
                "planned_params": float(planned[i]),
                "planned_tokens": float(c / (FLOPS_PER_PARAM_TOKEN * planned[i])),
                "log10_error": float(np.log10(planned[i] / n)),
                "lo": float(lo),
                "hi": float(hi),
                "covered": bool(lo <= n <= hi),
                "refused": False,
            }
        )
    return rows


def planner_columns(planner: Planner | None, published_a: float | None) -> dict[str, Any]:
    """A fit row's allocation columns: the planner, why, its a and interval, a − published a."""
    check = None
    if planner is not None and planner.name is not None:
        check = next((c for c in planner.checks if c.procedure == planner.name), None)
    a = math.nan if check is None else check.a
    return {
        "planner": None if planner is None else planner.name,
        "planner_why": None if planner is None else planner.why,
        "a": a,
        "a_low": math.nan if check is None or check.a_interval is None else check.a_interval[0],
        "a_high": math.nan if check is None or check.a_interval is None else check.a_interval[1],
        "a_error": a - published_a if published_a is not None else math.nan,
    }


def allocation_summary(rows: pd.DataFrame, by: Sequence[str] = ("procedure",)) -> pd.DataFrame:
    """Per ``by``: held-out optima, mean |log10 error| of N_opt (decades), share within 25%, the
    coverage of the N_opt intervals, and the plans refused."""
    if rows.empty:
        return pd.DataFrame()
    r = rows.assign(abs_error=rows["log10_error"].abs())
    g = r.groupby(list(by), sort=False)
    out = g.agg(
        n=("flops", "size"),
        refused=("refused", "sum"),
        mean_abs_log10_error=("abs_error", "mean"),
        max_abs_log10_error=("abs_error", "max"),
        mean_log10_error=("log10_error", "mean"),
        within_25=("abs_error", lambda s: float(np.mean(s <= WITHIN_25)) if len(s) else math.nan),
        coverage=("covered", "mean"),
    )
    return out.reset_index()
