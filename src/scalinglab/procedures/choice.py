"""Fitting by a procedure, :func:`fit_procedure`: the nested choice of what to fit, then the
fits, the run-to-run scatter, the extrapolation growth and the verdict that make up a
:class:`~scalinglab.procedures.prediction.ProcedureFit`.

Nested, automatic choice
    :func:`fit_procedure` with the ``auto`` procedure backtests every candidate *inside* the runs
    it is given (:mod:`scalinglab.procedures.inner`) and fits the candidate that predicted best.

The intervals and verdicts the result gives are described in
:mod:`scalinglab.procedures.prediction`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.fitting import Fit, FitError, FitWarning
from scalinglab.fitting.verdicts import exponent_reasons
from scalinglab.procedures.allocation import planner_for
from scalinglab.procedures.curves import curve_points
from scalinglab.procedures.drift import Drift, estimate_drift
from scalinglab.procedures.errors import BacktestError, ProcedureError
from scalinglab.procedures.inner import (
    INNER_CUTS,
    InnerBacktest,
    inner_backtest,
    member_weights,
    runs_inputs,
)
from scalinglab.procedures.prediction import (
    MAX_DISAGREEMENT,
    MAX_PROJECTED_ERROR,
    ProcedureFit,
    Verdict,
)
from scalinglab.procedures.recipes import fit_recipe, trust_mask
from scalinglab.procedures.registry import Procedure, get_procedure
from scalinglab.runs import Runs, as_runs

__all__ = [
    "MAX_DISAGREEMENT",
    "MAX_PROJECTED_ERROR",
    "ProcedureFit",
    "Verdict",
    "fit_procedure",
    "robust_scatter",
]


def robust_scatter(resid: np.ndarray) -> float:
    """Run-to-run scatter of log residuals ``resid``: 1.4826 · MAD (0 for fewer than two)."""
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
        The runs to fit: a :class:`~scalinglab.runs.Runs`, DataFrame or path (with a curve
        procedure, a store's path reads every checkpoint of its runs' curves).
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
    proc = get_procedure(procedure)
    # A curve procedure reads a store's training curves, not its runs' final points.
    table = as_runs(runs, curves=proc.curves)
    curve_notes: list[str] = []
    if proc.curves:
        # Before everything else, so that the inner backtest, the fits and the scatter all see
        # the same valid, weighted points.
        given = len(table)
        table, curve_notes = curve_points(
            table,
            schedule=schedule,
            early_fraction=proc.early_fraction,
            max_points=proc.max_curve_points,
        )
        runs_kept = table.frame["run_id"].nunique() if "run_id" in table.frame else len(table)
        curve_notes = [
            f"fitted {len(table)} points (of {given} checkpoints) of {runs_kept} runs' "
            "training curves",
            *curve_notes,
        ]
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
        if curve_notes:  # too few points may be the schedule's doing: say what it kept
            raise FitError(f"{failure} ({'; '.join(curve_notes)})", field=failure.field)
        raise failure
    if chosen.kind == "average":
        # The members' own inner errors (the average's error is not a member's).
        member_err = dict(inner.member_errors) if inner is not None else {}
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
    scatter = robust_scatter(logs - np.log(trusted.column("loss")))
    growth = inner.growth(chosen.name, scatter) if inner is not None else float("nan")
    if proc.kind == "auto" and inner is not None and proc.default:
        # The chosen candidate's inner errors are the smallest by selection (winner's curse):
        # its intervals are not allowed to be narrower than the default hedge's.
        hedge_growth = inner.growth(proc.default, scatter)
        if math.isfinite(hedge_growth) and not growth >= hedge_growth:
            growth = hedge_growth
    drift: Drift | None = None
    if chosen.drift_correction and inner is not None:
        drift = estimate_drift(
            inner.log_errors[chosen.name],
            inner.factors[chosen.name],
            inner.cut_ids,
            scatter,
            inner.continued,
        )
        # The corrected recipe's growth: its corrected inner errors plus the correction's own
        # uncertainty (procedures.drift).
        growth = drift.growth
        why += "; " + drift.describe()
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
        curve_notes=tuple(curve_notes),
        drift=drift,
    )
    if target:
        v = result.assess(**target)
        result = replace(result, reliable=v.reliable, reasons=v.reasons)
    return result
