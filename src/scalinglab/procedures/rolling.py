"""The rolling-origin backtest: how well each procedure predicted runs it did not see.

For a series of compute cuts, fit on the runs at or below the cut, predict the runs above, and
record each prediction's error against its *extrapolation factor* (the run's compute over the
largest fitted compute). Groups (recipes, configurations) are backtested separately and
summarised. Each fit is a :func:`~scalinglab.procedures.fit_procedure` on the runs below the cut
only, so an ``auto`` procedure's nested choice never sees the runs it is scored on.

A curve procedure (``curves``) fits the training curves cut at the same compute: every
checkpoint at or below the cut, none above it (a checkpoint's compute is its run's cost per
token times its tokens). A run's early checkpoints are evidence where its schedule makes them
so (constant, shared); with a decaying schedule only a run's end is, so a decaying run whose end
lies above the cut contributes nothing, not its last checkpoint below the cut (which is not a
run of that length). Every procedure is scored on the same held-out points: the run ends above
the cut (each run's last checkpoint and each WSD cooldown, a store's final losses), the points
the loss backtest scores; the cuts are planned on those run ends too, and a procedure that does
not read curves is fitted on the run ends below the cut.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.fitting import FitError
from scalinglab.procedures.allocation_backtest import (
    allocation_rows,
    allocation_summary,
    measured_optima,
    planner_columns,
)
from scalinglab.procedures.choice import fit_procedure
from scalinglab.procedures.curves import RUN_END, check_schedule, mark_run_ends
from scalinglab.procedures.errors import BacktestError, ProcedureError
from scalinglab.procedures.inner import INCLUSIVE, INNER_CUTS, runs_inputs
from scalinglab.procedures.prediction import ProcedureFit
from scalinglab.procedures.registry import DEFAULT_PROCEDURE, Procedure, get_procedure
from scalinglab.runs import Runs, as_runs

__all__ = ["BacktestResult", "backtest"]


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
        One row per (group, cut, procedure): the chosen recipe, why, its parameters, verdict,
        ``n_train`` (the points it was given: for a curve procedure, every checkpoint below the
        cut, before its schedule and early cut leave some out), ``seconds``, and the fit that
        planned (``planner``, ``planner_why``, ``a``, ``a_low``, ``a_high``,
        and ``a_error`` against ``published_a``).
    level:
        Level of the prediction intervals.
    allocation:
        The allocation backtest, one row per (group, cut, procedure, optimum measured above the
        cut): ``flops``, measured ``params_opt``, ``planned_params``, ``planned_tokens``,
        ``log10_error``, the interval ``lo``/``hi`` of the planned N and ``covered``, ``planner``,
        ``refused`` (see :mod:`~scalinglab.procedures.allocation_backtest`).
    published_a:
        The published a the fitted ones are compared with (None: not given).
    fitted:
        Each fit made, by (group, cut, procedure): what a caller that wants the fit itself (the
        report's held-out check) reads.
    """

    predictions: pd.DataFrame
    fits: pd.DataFrame
    level: float
    procedures: tuple[str, ...]
    allocation: pd.DataFrame = field(default_factory=pd.DataFrame)
    published_a: float | None = None
    fitted: Mapping[tuple[str, float, str], ProcedureFit] = field(default_factory=dict)

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
                chosen=(
                    "chosen",
                    lambda c: ", ".join(dict.fromkeys(x for x in c if isinstance(x, str))),
                ),
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

    def allocation_overall(self) -> pd.DataFrame:
        """Per procedure: the allocation backtest pooled over every measured optimum (mean
        |log10 error| of N_opt in decades, share within 25%, interval coverage, refusals), and
        the fitted a beside the published one when it was given."""
        out = allocation_summary(self.allocation)
        f = self.fits
        if f.empty or "a" not in f.columns:
            return out
        a = f.groupby("procedure", sort=False).agg(
            fits=("procedure", "size"),
            planned=("planner", lambda s: int(s.notna().sum())),
            a_mean=("a", "mean"),
            a_abs_error=("a_error", lambda s: float(s.abs().mean())),
        )
        a = a.reset_index()
        return a if out.empty else out.merge(a, on="procedure", how="outer")

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
            "published_a": self.published_a,
            "allocation_overall": self.allocation_overall().to_dict(orient="records"),
            "allocation": self.allocation.to_dict(orient="records"),
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
    optimum_column: str | None = None,
    published_a: float | None = None,
    allocation: bool = True,
    schedule: str | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of ``procedures`` on ``runs``.

    For each group and each compute cut, every procedure is fitted on the runs with C ≤ cut
    (nothing else is passed to it) and predicts the runs with C > cut (and ≥ ``min_factor`` ×
    cut); each prediction's relative error, extrapolation factor, interval and verdict is kept.

    Parameters
    ----------
    runs:
        The runs (a :class:`~scalinglab.runs.Runs`, DataFrame or path). With a curve procedure:
        training curves (rows sharing a ``run_id`` are one run's checkpoints; a store's path
        reads every stored run's curve), cut at each cut's compute for the curve procedures and
        scored on the run ends (see the module docstring).
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
    optimum_column:
        A column holding the compute-optimal N at each budget (e.g. Porian et al.'s
        ``N_opt_paper``); the allocation backtest compares plans with it. Default: the IsoFLOP
        minima (Approach 2) of the runs above each cut, where they hold profiles.
    published_a:
        A published a (N_opt ∝ C^a) to compare each planning fit's a with, for data without
        IsoFLOP profiles (Hoffmann et al. 2022: 0.46–0.50; Besiroglu et al. 2024: 0.51).
    allocation:
        Backtest the plans too (each fit then chooses its planner; False: loss only, faster).
    schedule:
        With a curve procedure: the runs' schedule (``"decay"``, ``"constant"``, ``"shared"``;
        default: each run's own), as :func:`~scalinglab.procedures.fit_procedure` takes it.

    Raises
    ------
    BacktestError
        Unknown group column, bad cuts, a schedule without a curve procedure, or no cut leaves
        runs on both sides.
    ProcedureError
        Unknown procedure or schedule.
    """
    procs = [get_procedure(p) for p in procedures]
    reads_curves = any(p.curves for p in procs)
    if schedule is not None and not reads_curves:
        raise BacktestError(
            "schedule applies to a curve procedure (curves): add one, or drop the schedule",
            field="schedule",
        )
    if schedule is not None:
        check_schedule(schedule)  # here, not inside every fit
    table = as_runs(runs, curves=reads_curves)
    curve_groups: dict[str, Runs] = {}
    if reads_curves:
        # Run ends marked on the whole curves, before any cut can hide where a run ends.
        curve_table = mark_run_ends(table, schedule=schedule)
        table = curve_table.subset(curve_table.frame[RUN_END].to_numpy(bool))
        curve_groups = dict(_groups(curve_table, group_by)) if _has(table, group_by) else {}
    _check_options(table, procs, cuts, min_factor, group_by, level)
    _check_allocation_options(table, optimum_column, published_a)
    plan = _plan_cuts(_groups(table, group_by), cuts, n_cuts, min_factor)
    if not plan:
        raise BacktestError(
            "no cut leaves runs on both sides"
            + (f" at ≥ {min_factor:g}× the cut" if min_factor > 1 else "")
            + f" (compute from {table.column('flops').min():.3g} to "
            f"{table.column('flops').max():.3g} FLOP)",
            field="cuts",
        )
    total = len(plan) * len(procs)
    done = 0
    pred_rows: list[dict[str, Any]] = []
    fit_rows: list[dict[str, Any]] = []
    alloc_rows: list[dict[str, Any]] = []
    fitted: dict[tuple[str, float, str], ProcedureFit] = {}
    for name, g, cut in plan:
        flops = g.column("flops")
        train = g.subset(flops <= cut * INCLUSIVE)
        above = flops >= cut / INCLUSIVE * min_factor if min_factor > 1 else flops > cut * INCLUSIVE
        test = g.subset(above)
        where = {"group": name, "cut_flops": cut}
        optima = measured_optima(test, optimum_column) if allocation else None
        curve_train = None
        if name in curve_groups:
            curve = curve_groups[name]
            curve_train = curve.subset(curve.column("flops") <= cut * INCLUSIVE)
        for proc in procs:
            t0 = time.perf_counter()
            seen = curve_train if proc.curves and curve_train is not None else train
            try:
                pf = fit_procedure(
                    proc,
                    seen,
                    bootstrap=bootstrap,
                    seed=seed,
                    inner_cuts=inner_cuts,
                    n_jobs=n_jobs,
                    planner=allocation,
                    schedule=schedule if proc.curves else None,
                )
            except (FitError, BacktestError, ProcedureError) as exc:
                pf = None
                fit_rows.append(_failed_row(where, proc, exc, len(seen), t0))
            if pf is not None:
                fitted[name, cut, proc.name] = pf
                rows, fit_row = _score(pf, test, level)
                seconds = time.perf_counter() - t0
                fit_rows.append(
                    {**where, "procedure": proc.name, **fit_row}
                    | {"n_train": len(seen), "seconds": seconds}
                    | planner_columns(pf.planner, published_a)
                )
                pred_rows += [{**where, "procedure": proc.name, **row} for row in rows]
                if pf.planner is not None and optima is not None:
                    plans = allocation_rows(pf.planner, optima, level=level)
                    at = {**where, "procedure": proc.name, "chosen": pf.chosen}
                    alloc_rows += [{**at, **row} for row in plans]
            done += 1
            if progress is not None:
                progress(done, total)
    return BacktestResult(
        predictions=pd.DataFrame(pred_rows),
        fits=pd.DataFrame(fit_rows),
        level=level,
        procedures=tuple(p.name for p in procs),
        allocation=pd.DataFrame(alloc_rows),
        published_a=published_a,
        fitted=fitted,
    )


def _check_options(
    table: Runs,
    procs: Sequence[Procedure],
    cuts: Sequence[float] | None,
    min_factor: float,
    group_by: str | None,
    level: float,
) -> None:
    if not procs:
        raise BacktestError("give at least one procedure", field="procedures")
    if not 0 < level < 1:
        raise BacktestError(f"level must lie in (0, 1), got {level!r}", field="level")
    if not (math.isfinite(min_factor) and min_factor >= 1):
        raise BacktestError(f"min_factor must be >= 1, got {min_factor!r}", field="min_factor")
    if cuts is not None:
        bad = [c for c in cuts if not (math.isfinite(c) and c > 0)]
        if bad or not len(cuts):
            raise BacktestError(f"cuts must be FLOP counts > 0, got {list(cuts)!r}", field="cuts")
    if group_by is not None and group_by not in table.frame.columns:
        raise BacktestError(
            f"group_by {group_by!r} is not a column of the runs table; columns: "
            f"{', '.join(map(str, table.frame.columns))}",
            field="group_by",
        )


def _has(table: Runs, group_by: str | None) -> bool:
    return group_by is None or group_by in table.frame.columns


def _check_allocation_options(
    table: Runs, optimum_column: str | None, published_a: float | None
) -> None:
    if optimum_column is not None and optimum_column not in table.frame.columns:
        raise BacktestError(
            f"optimum column {optimum_column!r} is not a column of the runs table",
            field="optimum_column",
        )
    if published_a is not None and not 0 < published_a < 1:
        raise BacktestError(
            f"published a must lie in (0, 1), got {published_a!r}", field="published_a"
        )


def _groups(table: Runs, group_by: str | None) -> list[tuple[str, Runs]]:
    """The runs of each value of ``group_by``, in order of first appearance (or all as one)."""
    if group_by is None:
        return [("all", table)]
    keys = table.frame[group_by].astype(str)
    return [(str(k), table.subset((keys == k).to_numpy())) for k in dict.fromkeys(keys)]


def _plan_cuts(
    groups: list[tuple[str, Runs]], cuts: Sequence[float] | None, n_cuts: int, min_factor: float
) -> list[tuple[str, Runs, float]]:
    """Every (group, cut) that leaves two runs or more to fit and one or more to predict."""
    plan: list[tuple[str, Runs, float]] = []
    for name, g in groups:
        flops = g.column("flops")
        gcuts = list(cuts) if cuts is not None else _default_cuts(flops, n_cuts)
        for c in gcuts:
            below = flops <= c * INCLUSIVE
            above = flops >= c / INCLUSIVE * min_factor if min_factor > 1 else ~below
            if below.sum() >= 2 and above.any():
                plan.append((name, g, float(c)))
    return plan


def _failed_row(
    where: dict[str, Any], proc: Procedure, exc: Exception, n_train: int, t0: float
) -> dict[str, Any]:
    return {
        **where,
        "procedure": proc.name,
        "chosen": None,
        "why": f"could not fit: {exc}",
        "params": None,
        "reliable": False,
        "reasons": (f"could not fit: {exc}",),
        "n_train": n_train,
        "seconds": time.perf_counter() - t0,
    }


def _score(
    pf: ProcedureFit, test: Runs, level: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each held-out run's prediction, interval and verdict, and the fit's own row."""
    t_in = runs_inputs(test)
    obs = test.column("loss")
    pred = np.asarray(pf.predict(**t_in), dtype=float).reshape(-1)
    lo, hi = (np.asarray(v).reshape(-1) for v in pf.interval(level, **t_in))
    factor = test.column("flops") / pf.max_fitted_flops
    params, tokens, flops = test.column("params"), test.column("tokens"), test.column("flops")
    rows = []
    for i in range(len(test)):
        verdict = pf.assess(params=params[i], tokens=tokens[i])
        rows.append(
            {
                "chosen": pf.chosen,
                "params": float(params[i]),
                "tokens": float(tokens[i]),
                "flops": float(flops[i]),
                "loss": float(obs[i]),
                "predicted": float(pred[i]),
                "rel_error": float(pred[i] / obs[i] - 1.0),
                "factor": float(factor[i]),
                "lo": float(lo[i]),
                "hi": float(hi[i]),
                "covered": bool(lo[i] <= obs[i] <= hi[i]),
                "reliable": verdict.reliable,
                "reasons": verdict.reasons,
            }
        )
    fit_verdict = pf.assess(**t_in)
    fit_row = {
        "chosen": pf.chosen,
        "why": pf.why,
        "params": [dict(f.params) for f in pf.fits],
        "reliable": fit_verdict.reliable,
        "reasons": fit_verdict.reasons,
    }
    return rows, fit_row
