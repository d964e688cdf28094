"""What a report shows, computed once: :func:`build_content` asks the fit and the planner.

The report is drawn in two steps. :func:`build_content` asks the fit and the planner everything
the page needs (predictions, the compute-optimal frontier and its bootstrap band, IsoFLOP
parabolas, slices of the law, the planned allocation) and stores the answers in the frozen
values of :mod:`scalinglab.report.values` and the tables of :mod:`scalinglab.report.tables`.
:mod:`scalinglab.report.figures` and :mod:`scalinglab.report.html` then only draw and format
them, so they can be tested on any numbers without a fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalinglab.report.tables import (
    exponent_facts,
    exponent_names,
    fit_table,
    holdout_table,
    plan_table,
    run_labels,
    run_table,
    symbol,
    tooltips,
    trained_table,
)
from scalinglab.report.values import (
    Curve,
    IsoFlopProfile,
    PlanPoint,
    ReportContent,
    RunPoints,
    Samples,
    Slice,
    TrainedRun,
    TrainingCurve,
)
from scalinglab.runs import Runs

if TYPE_CHECKING:
    from scalinglab.fitting import Fit

__all__ = ["SLICE_TOLERANCE", "build_content"]

# Runs within this factor of a slice's fixed N (or D) are drawn with the slice.
SLICE_TOLERANCE = 10**0.15
_GRID_POINTS = 60


def build_content(
    runs: Runs,
    fit: Fit | None = None,
    *,
    holdout_fit: Fit | None = None,
    budgets: Sequence[float] = (),
    plan_options: Mapping[str, Any] | None = None,
    level: float = 0.9,
    title: str = "Scaling-law report",
    commands: Sequence[str] = (),
    isoflop: bool | None = None,
    curves: pd.DataFrame | None = None,
    answer: Sequence[str] = (),
    trained: Sequence[TrainedRun] = (),
) -> ReportContent:
    """Ask the fit and the planner everything the report shows.

    Parameters
    ----------
    runs
        The validated runs.
    fit
        A fit of a law to (some of) these runs; without one the report shows the runs only.
        Runs above ``fit.holdout["threshold_flops"]`` are marked as held out of it.
    holdout_fit
        A second fit made with a hold-out (``holdout_above``/``holdout_top``) whose errors fill
        the held-out table when ``fit`` itself held nothing out.
    budgets
        Training budgets in FLOP to plan (one table row each; the first is drawn).
    plan_options
        Options of :func:`scalinglab.plan.allocate`: ``gpu``, ``mfu``, ``count``,
        ``price_per_gpu_hour``, ``pue``, ``max_params``, ...
    level
        Level of the bootstrap bands and plan intervals.
    title, commands
        Page title and the shell commands that reproduce the report.
    isoflop
        Draw IsoFLOP profiles: ``None`` decides from the runs (several runs at each of at
        least three compute levels).
    curves
        Loss curves from a store (``Store.curves()``: ``run_id``, ``tokens``, ``val_loss``);
        drawn for the runs of ``runs`` they belong to.
    answer
        Sentences the page leads with (the finding, in words).
    trained
        Runs planned from the fit and then trained: drawn against the frontier, tabulated with
        their predicted and measured losses.
    """
    from scalinglab.plan import PlanError, allocate, frontier

    frame = runs.frame
    names = run_labels(frame)
    flops = frame["flops"].to_numpy(float)
    notes = list(runs.notes)
    warn: list[str] = []
    law = fit.law_object if fit is not None else None

    threshold = None
    if fit is not None and fit.holdout:
        threshold = fit.holdout.get("threshold_flops")
    heldout = flops > threshold if threshold is not None else np.zeros(len(frame), bool)

    predicted = None
    if law is not None and fit is not None and all(c in frame for c in law.inputs):
        predicted = np.asarray(
            fit.predict(**{c: frame[c].to_numpy(float) for c in law.inputs}), dtype=float
        )
    points = RunPoints(
        flops=flops,
        params=frame["params"].to_numpy(float),
        tokens=frame["tokens"].to_numpy(float),
        loss=frame["loss"].to_numpy(float),
        labels=tooltips(frame, names),
        heldout=heldout,
        predicted=predicted,
    )

    fields: dict[str, Any] = {}
    facts: list[tuple[str, str]] = [("runs", f"{len(frame)}")]
    if fit is not None and law is not None:
        warn.extend(fit.warnings)
        fields["law"] = fit.law
        fields["law_formula"] = law.formula
        domain_max = fit.domain.flops[1] if fit.domain is not None else float(flops[~heldout].max())
        fields["domain_flops_max"] = domain_max
        top = max(flops.max(), *(budgets or [0.0]))
        grid = np.geomspace(flops.min() / 1.5, top * 1.5, _GRID_POINTS)
        facts.append(("law", fit.law))
        facts.extend(exponent_facts(fit))

        plan_kw = {**(plan_options or {}), "level": level}
        try:
            table = frontier(fit, grid, **plan_kw)
        except PlanError as exc:
            table = None
            if exc.field == "fit" and "must not plan" in str(exc):
                warn.append(f"compute-optimal frontier: {exc}")
        if table is not None:
            fields["frontier"] = _curve(table, "flops", "loss", level, "compute-optimal loss L*(C)")
            fields["params_frontier"] = _curve(
                table, "flops", "params", level, "N_opt(C) from the fitted law"
            )
            fields["tokens_frontier"] = _curve(
                table, "flops", "tokens", level, "D_opt(C) from the fitted law"
            )
        elif law.inputs == ("flops",):
            lo = hi = None
            if fit.bootstrap_params is not None:
                lo, hi = fit.prediction_interval(level, flops=grid)
            fields["frontier"] = Curve(
                grid, np.asarray(fit.predict(flops=grid)), lo, hi, level, "fitted L(C)"
            )

        if budgets and table is not None:
            allocations = []
            for budget in budgets:
                try:
                    allocations.append(allocate(fit, float(budget), **plan_kw))
                except PlanError as exc:
                    warn.append(f"plan for {budget:.3g} FLOP: {exc}")
            if allocations:
                first = allocations[0]
                fields["plan"] = PlanPoint(
                    flops=first.flops,
                    params=first.params,
                    tokens=first.tokens,
                    loss=first.loss,
                    loss_interval=first.loss_interval,
                    params_interval=first.params_interval,
                    tokens_interval=first.tokens_interval,
                    level=first.interval_level,
                )
                fields["plan_table"] = plan_table(allocations, level)
                for a in allocations:
                    warn.extend(f"plan at {a.budget_flops:.3g} FLOP: {w}" for w in a.warnings)
                facts.append(
                    (
                        f"plan at {first.budget_flops:.3g} FLOP",
                        f"N {first.params:.3g}, D {first.tokens:.3g}, loss {first.loss:.3f}",
                    )
                )

        if set(law.inputs) == {"params", "tokens"}:
            fields["slices_fixed_tokens"] = _slices(fit, frame, "tokens", "params")
            fields["slices_fixed_params"] = _slices(fit, frame, "params", "tokens")
            fields["slice_tolerance"] = SLICE_TOLERANCE

        if fit.bootstrap_params is not None and len(fit.bootstrap_params):
            fields["bootstrap"] = _bootstrap_samples(fit)
            fields["n_bootstrap"] = len(fit.bootstrap_params)
        fields["ci_level"] = fit.ci_level
        fields["fit_table"] = fit_table(fit)

    check = fit if fit is not None and fit.holdout else holdout_fit
    if check is not None and check.holdout:
        fields["holdout_table"], fields["holdout_summary"], headline = holdout_table(check, level)
        facts.append(("held-out error", headline))

    profiles, profile_fit, exponent = _isoflop(runs, names, isoflop)
    if profiles:
        fields["isoflop"] = profiles
        fields["isoflop_fit"] = profile_fit
        fields["isoflop_exponent"] = exponent

    if curves is not None and len(curves):
        fields["curves"] = _training_curves(frame, curves)

    if trained:
        fields["trained"] = tuple(trained)
        fields["trained_table"] = trained_table(trained)
        for run in trained:
            if run.measured is not None:
                facts.append(
                    (
                        f"{run.label}: predicted → measured",
                        f"{run.predicted:.4f} → {run.measured:.4f} ({100 * run.rel_error:+.2f}%)",
                    )
                )

    return ReportContent(
        title=title,
        source=runs.source,
        runs=points,
        run_table=run_table(frame, names, predicted, heldout),
        commands=tuple(commands),
        notes=tuple(notes),
        warnings=tuple(dict.fromkeys(warn)),
        facts=tuple(facts),
        answer=tuple(answer),
        **fields,
    )


def _curve(table: pd.DataFrame, x: str, y: str, level: float, label: str) -> Curve:
    lo_col, hi_col = f"{y}_low", f"{y}_high"
    lo = hi = None
    if lo_col in table and table[lo_col].notna().all():
        lo, hi = table[lo_col].to_numpy(float), table[hi_col].to_numpy(float)
    return Curve(table[x].to_numpy(float), table[y].to_numpy(float), lo, hi, level, label)


def _bootstrap_samples(fit: Fit) -> dict[str, Samples]:
    law = fit.law_object
    rows = np.asarray(fit.bootstrap_params, dtype=float)
    columns = {p: rows[:, i] for i, p in enumerate(law.param_names)}
    columns.update({k: np.asarray(v, float) for k, v in law.derived_array(rows).items()})
    estimates = {**dict(fit.params), **fit.derived}
    out = {}
    for name in exponent_names(fit):
        if name not in columns:
            continue
        interval = fit.ci.get(name) if fit.ci else None
        out[name] = Samples(symbol(name), columns[name], estimates.get(name), interval)
    return out


def _slices(fit: Fit, frame: pd.DataFrame, fixed: str, free: str) -> tuple[Slice, ...]:
    """Three slices of the law at the 15th, 50th and 85th percentiles of the fixed input."""
    values_fixed = frame[fixed].to_numpy(float)
    values_free = frame[free].to_numpy(float)
    x = np.geomspace(values_free.min() / 1.2, values_free.max() * 1.2, _GRID_POINTS)
    out = []
    for q in (0.15, 0.5, 0.85):
        value = float(np.exp(np.quantile(np.log(values_fixed), q)))
        y = np.asarray(fit.predict(**{fixed: np.full_like(x, value), free: x}), dtype=float)
        # The floor the free input cannot push below: its term gone, the fixed one's left.
        asymptote = float(fit.predict(**{fixed: value, free: 1e30}))
        members = np.abs(np.log(values_fixed / value)) <= np.log(SLICE_TOLERANCE)
        out.append(
            Slice(value, Curve(x, y), asymptote if np.isfinite(asymptote) else None, members)
        )
    return tuple(out)


_LEVEL_RTOL = 0.05
_ISOFLOP_BOOTSTRAP = 100
_ISOFLOP_WINDOW = 2  # approaches.isoflop's default: the lowest-loss size and two either side


def _isoflop(
    runs: Runs, names: Sequence[str], wanted: bool | None
) -> tuple[
    tuple[IsoFlopProfile, ...], Curve | None, tuple[float, tuple[float, float] | None] | None
]:
    """IsoFLOP profiles from Approach 2 (:func:`scalinglab.approaches.isoflop`).

    Each level the approach accepts is drawn with its runs and its parabola in ln N, rebuilt
    from the vertex and curvature it reports: L = L_opt + c·(ln N − ln N_opt)². Levels it
    refuses (edge minima, too few sizes) are not drawn; nothing is drawn without two levels.
    """
    from scalinglab.approaches import ApproachError, isoflop

    if wanted is False:
        return (), None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = isoflop(
                runs,
                on_edge="skip",
                level_rtol=_LEVEL_RTOL,
                window=_ISOFLOP_WINDOW,
                bootstrap=_ISOFLOP_BOOTSTRAP,
                seed=0,
            )
    except (ApproachError, ValueError):
        return (), None, None
    frame = runs.frame
    flops = frame["flops"].to_numpy(float)
    params = frame["params"].to_numpy(float)
    loss = frame["loss"].to_numpy(float)
    profiles = []
    for row in result.points.itertuples(index=False):
        members = np.abs(np.log(flops / row.flops)) <= np.log1p(_LEVEL_RTOL)
        if not members.any():
            continue
        n = params[members]
        # Draw the parabola only over the sizes Approach 2 fitted it to: the lowest-loss size
        # and _ISOFLOP_WINDOW sizes either side (far from the minimum it means nothing).
        sizes = np.unique(n)
        k = int(np.searchsorted(sizes, n[np.argmin(loss[members])]))
        used = sizes[max(0, k - _ISOFLOP_WINDOW) : k + _ISOFLOP_WINDOW + 1]
        grid = np.linspace(np.log(used.min()), np.log(used.max()), 40)
        curve = Curve(
            np.exp(grid), row.loss_opt + row.curvature * (grid - np.log(row.params_opt)) ** 2
        )
        profiles.append(
            IsoFlopProfile(
                float(row.flops),
                n,
                loss[members],
                tuple(np.asarray(names, dtype=object)[members]),
                curve,
                float(row.params_opt),
                float(row.loss_opt),
            )
        )
    if len(profiles) < 2:
        return (), None, None
    law = result.params_opt
    ci = (law.ci or {}).get("exponent")
    shown = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    xs = np.geomspace(min(p.flops for p in profiles), flops.max() * 1.5, 30)
    fit_curve = Curve(
        xs,
        np.asarray(law(xs), dtype=float),
        label=f"Approach 2: N_opt ∝ C^{law.exponent:.3f}{shown}",
    )
    return tuple(profiles), fit_curve, (float(law.exponent), ci)


def _training_curves(frame: pd.DataFrame, curves: pd.DataFrame) -> tuple[TrainingCurve, ...]:
    """One validation-loss curve per run of ``frame`` that ``curves`` holds points for."""
    if "run_id" not in frame or not {"run_id", "tokens", "val_loss"} <= set(curves.columns):
        return ()
    params = frame.groupby("run_id")["params"].first()
    out = []
    for run_id, points in curves.dropna(subset=["val_loss"]).groupby("run_id", sort=False):
        if run_id not in params.index or len(points) < 2:
            continue
        points = points.sort_values("tokens")
        points = points[points["tokens"] > 0]
        out.append(
            TrainingCurve(
                str(run_id),
                float(params[run_id]),
                points["tokens"].to_numpy(float),
                points["val_loss"].to_numpy(float),
            )
        )
    return tuple(sorted(out, key=lambda c: c.params))
