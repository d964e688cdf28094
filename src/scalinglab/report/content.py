"""What a report shows, as plain values: the runs, curves with bands, profiles, tables.

The report is drawn in two steps. :func:`build_content` asks the fit and the planner everything
the page needs (predictions, the compute-optimal frontier and its bootstrap band, IsoFLOP
parabolas, the planned allocation) and stores the answers as arrays in frozen dataclasses.
:mod:`scalinglab.report.figures` and :mod:`scalinglab.report.html` then only draw and format those
values, so they can be tested on any numbers without a fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalinglab.runs import Runs

if TYPE_CHECKING:
    from scalinglab.fit import Fit

__all__ = [
    "Curve",
    "IsoFlopProfile",
    "PlanPoint",
    "ReportContent",
    "RunPoints",
    "Samples",
    "Slice",
    "build_content",
    "run_labels",
]


def _frozen_array(values: Any, dtype: Any = float) -> np.ndarray:
    arr = np.array(values, dtype=dtype)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Curve:
    """A curve ``y(x)`` with an optional interval ``[lo, hi]`` at ``level``."""

    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    level: float | None = None
    label: str = ""

    def __post_init__(self) -> None:
        for name in ("x", "y", "lo", "hi"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen_array(value))
        if self.x.shape != self.y.shape:
            raise ValueError(f"curve {self.label!r}: x and y differ in shape")


@dataclass(frozen=True)
class RunPoints:
    """The runs as arrays, in table order.

    ``heldout`` marks runs the fit did not see; ``predicted`` is the fit's loss for every run
    (``None`` without a fit); ``labels`` name each run for tooltips (user text: escape it).
    """

    flops: np.ndarray
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    labels: tuple[str, ...]
    heldout: np.ndarray
    predicted: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("flops", "params", "tokens", "loss", "predicted"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen_array(value))
        object.__setattr__(self, "heldout", _frozen_array(self.heldout, bool))
        object.__setattr__(self, "labels", tuple(str(s) for s in self.labels))
        n = len(self.flops)
        sizes = {
            len(self.params),
            len(self.tokens),
            len(self.loss),
            len(self.labels),
            len(self.heldout),
        }
        if self.predicted is not None:
            sizes.add(len(self.predicted))
        if sizes != {n}:
            raise ValueError("run arrays differ in length")

    def __len__(self) -> int:
        return len(self.flops)


@dataclass(frozen=True)
class Slice:
    """The fitted law along one input with the other fixed at ``value``.

    ``asymptote`` is the loss the curve flattens to (the fixed input's term plus the floor);
    ``members`` marks the runs close enough to ``value`` to be drawn with the slice.
    """

    value: float
    curve: Curve
    asymptote: float | None
    members: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", _frozen_array(self.members, bool))


@dataclass(frozen=True)
class IsoFlopProfile:
    """Runs at one compute level, the parabola in log N through them and its minimum."""

    flops: float
    params: np.ndarray
    loss: np.ndarray
    labels: tuple[str, ...]
    curve: Curve | None = None
    params_opt: float | None = None
    loss_opt: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen_array(self.params))
        object.__setattr__(self, "loss", _frozen_array(self.loss))
        object.__setattr__(self, "labels", tuple(str(s) for s in self.labels))


@dataclass(frozen=True)
class PlanPoint:
    """One planned run: where it sits on the frontier, with its bootstrap intervals."""

    flops: float
    params: float
    tokens: float
    loss: float
    loss_interval: tuple[float, float] | None = None
    params_interval: tuple[float, float] | None = None
    tokens_interval: tuple[float, float] | None = None
    level: float | None = None


@dataclass(frozen=True)
class Samples:
    """Bootstrap draws of one quantity, its point estimate and percentile interval."""

    label: str
    values: np.ndarray
    estimate: float | None
    interval: tuple[float, float] | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _frozen_array(self.values))


@dataclass(frozen=True)
class ReportContent:
    """Everything a report shows, computed once.

    Curves and points feed the figures; the ``*_table`` frames feed the HTML tables (their
    columns are display names; numbers stay numbers and are formatted by the page).
    """

    title: str
    source: str
    runs: RunPoints
    law: str | None = None
    law_formula: str | None = None
    frontier: Curve | None = None
    params_frontier: Curve | None = None
    tokens_frontier: Curve | None = None
    domain_flops_max: float | None = None
    plan: PlanPoint | None = None
    slices_fixed_tokens: tuple[Slice, ...] = ()
    slices_fixed_params: tuple[Slice, ...] = ()
    slice_tolerance: float = 2.0
    isoflop: tuple[IsoFlopProfile, ...] = ()
    isoflop_fit: Curve | None = None
    isoflop_exponent: tuple[float, tuple[float, float] | None] | None = None
    bootstrap: Mapping[str, Samples] = field(default_factory=dict)
    n_bootstrap: int = 0
    ci_level: float | None = None
    fit_table: pd.DataFrame | None = None
    holdout_table: pd.DataFrame | None = None
    holdout_summary: str | None = None
    plan_table: pd.DataFrame | None = None
    run_table: pd.DataFrame | None = None
    commands: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> Sequence[tuple[str, str]]:
        """Headline facts for the top of the page, as (label, value) pairs."""
        return self.facts


# ------------------------------------------------------------------------------------------------
# building the content from runs, a fit and a plan

# Symbols for the exponents the bootstrap figure shows, in the field's notation.
_SYMBOLS = {
    "alpha": "α",
    "beta": "β",
    "alpha_N": "α_N",
    "alpha_D": "α_D",
    "a": "a = β/(α+β)",
    "b": "b = α/(α+β)",
}
# Runs within this factor of a slice's fixed N (or D) are drawn with the slice.
SLICE_TOLERANCE = 10**0.15
_GRID_POINTS = 60


def run_labels(frame: pd.DataFrame) -> tuple[str, ...]:
    """A short name per run: its ``run_id`` (and ``group``), else its row number."""
    n = len(frame)
    ids = (
        frame["run_id"].astype(str).tolist()
        if "run_id" in frame
        else [f"row {i + 1}" for i in range(n)]
    )
    if "group" in frame:
        ids = [f"{g} / {r}" for g, r in zip(frame["group"].astype(str), ids, strict=True)]
    return tuple(ids)


def _tooltips(frame: pd.DataFrame, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(
        f"{name}: N={n:.3g}, D={d:.3g}, C={c:.3g} FLOP, loss={lo:.4f}"
        for name, n, d, c, lo in zip(
            names, frame["params"], frame["tokens"], frame["flops"], frame["loss"], strict=True
        )
    )


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
        labels=_tooltips(frame, names),
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
        facts.extend(_exponent_facts(fit))

        plan_kw = {**(plan_options or {}), "level": level}
        try:
            table = frontier(fit, grid, **plan_kw)
        except PlanError:
            table = None
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
                fields["plan_table"] = _plan_table(allocations, level)
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
        fields["fit_table"] = _fit_table(fit)

    check = fit if fit is not None and fit.holdout else holdout_fit
    if check is not None and check.holdout:
        fields["holdout_table"], fields["holdout_summary"], headline = _holdout(check, level)
        facts.append(("held-out error", headline))

    profiles, profile_fit, exponent = _isoflop(runs, names, isoflop)
    if profiles:
        fields["isoflop"] = profiles
        fields["isoflop_fit"] = profile_fit
        fields["isoflop_exponent"] = exponent

    return ReportContent(
        title=title,
        source=runs.source,
        runs=points,
        run_table=_run_table(frame, names, predicted, heldout),
        commands=tuple(commands),
        notes=tuple(notes),
        warnings=tuple(dict.fromkeys(warn)),
        facts=tuple(facts),
        **fields,
    )


def _curve(table: pd.DataFrame, x: str, y: str, level: float, label: str) -> Curve:
    lo_col, hi_col = f"{y}_low", f"{y}_high"
    lo = hi = None
    if lo_col in table and table[lo_col].notna().all():
        lo, hi = table[lo_col].to_numpy(float), table[hi_col].to_numpy(float)
    return Curve(table[x].to_numpy(float), table[y].to_numpy(float), lo, hi, level, label)


def _symbol(name: str) -> str:
    return _SYMBOLS.get(name, name)


def _exponent_names(fit: Fit) -> list[str]:
    law = fit.law_object
    names = [p for p in law.param_names if p.startswith(("alpha", "beta"))]
    return names + list(fit.derived)


def _exponent_facts(fit: Fit) -> list[tuple[str, str]]:
    values = {**dict(fit.params), **fit.derived}
    out = []
    for name in _exponent_names(fit):
        text = f"{values[name]:.3f}"
        if fit.ci and name in fit.ci:
            lo, hi = fit.ci[name]
            text += f" [{lo:.3f}, {hi:.3f}]"
        out.append((_symbol(name), text))
    return out


def _bootstrap_samples(fit: Fit) -> dict[str, Samples]:
    law = fit.law_object
    rows = np.asarray(fit.bootstrap_params, dtype=float)
    columns = {p: rows[:, i] for i, p in enumerate(law.param_names)}
    columns.update({k: np.asarray(v, float) for k, v in law.derived_array(rows).items()})
    estimates = {**dict(fit.params), **fit.derived}
    out = {}
    for name in _exponent_names(fit):
        if name not in columns:
            continue
        interval = fit.ci.get(name) if fit.ci else None
        out[name] = Samples(_symbol(name), columns[name], estimates.get(name), interval)
    return out


def _fit_table(fit: Fit) -> pd.DataFrame:
    level = f"{fit.ci_level:.0%} interval"
    values = {**dict(fit.params), **fit.derived}
    rows = []
    for name, value in values.items():
        ci = fit.ci.get(name) if fit.ci else None
        rows.append({"parameter": _symbol(name), "estimate": value, level: ci})
    table = pd.DataFrame(rows)
    if not fit.ci:
        table = table.drop(columns=[level])
    return table


def _holdout(check: Fit, level: float) -> tuple[pd.DataFrame, str, str]:
    h = check.holdout or {}
    rows = []
    for run in h.get("runs", []):
        row = {
            "N": run["params"],
            "D": run["tokens"],
            "C (FLOP)": run["flops"],
            "observed loss": run["loss"],
            "predicted loss": run["predicted"],
            "relative error (%)": 100.0 * run["rel_error"],
        }
        if run.get("interval") is not None:
            row[f"{level:.0%} interval"] = tuple(run["interval"])
        rows.append(row)
    mean = 100.0 * float(h.get("mean_abs_rel_error", float("nan")))
    worst = 100.0 * float(h.get("max_abs_rel_error", float("nan")))
    n_hold = int(h.get("n_holdout", len(rows)))
    plural = "s" if n_hold != 1 else ""
    threshold = float(h.get("threshold_flops", float("nan")))
    summary = (
        f"Fitted on the {h.get('n_train', '?')} runs with C ≤ {threshold:.3g} FLOP, the law "
        f"predicts the {n_hold} larger-compute run{plural} with a mean absolute relative error "
        f"of {mean:.2f}% (worst {worst:.2f}%)."
    )
    if "coverage" in h:
        summary += f" {100 * h['coverage']:.0f}% of them fall inside the bootstrap interval."
    headline = f"{mean:.2f}% ({n_hold} run{plural})"
    return pd.DataFrame(rows), summary, headline


def _plan_table(allocations: Sequence[Any], level: float) -> pd.DataFrame:
    rows = []
    for a in allocations:
        c = a.cost
        row = {
            "budget (FLOP)": a.budget_flops,
            "PF-days": c.pf_days,
            "N": a.params,
            f"N {level:.0%} interval": a.params_interval,
            "D": a.tokens,
            f"D {level:.0%} interval": a.tokens_interval,
            "D/N": a.tokens_per_param,
            "loss": a.loss,
            f"loss {level:.0%} interval": a.loss_interval,
            "FLOPs of the run": a.flops,
            f"{c.gpu}-hours (MFU {c.mfu:.0%})": c.gpu_hours,
            f"days on {c.count}": c.wall_days,
            f"energy (kWh, PUE {c.pue:g})": c.energy_kwh,
            "cost": c.cost,
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.dropna(axis=1, how="all")


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


def _run_table(
    frame: pd.DataFrame, names: Sequence[str], predicted: np.ndarray | None, heldout: np.ndarray
) -> pd.DataFrame:
    table = pd.DataFrame({"run": list(names)})
    table["N"] = frame["params"].to_numpy(float)
    table["D"] = frame["tokens"].to_numpy(float)
    table["C (FLOP)"] = frame["flops"].to_numpy(float)
    table["D/N"] = table["D"] / table["N"]
    table["loss"] = frame["loss"].to_numpy(float)
    if predicted is not None:
        table["predicted"] = predicted
        table["residual (%)"] = 100.0 * (table["loss"] / predicted - 1.0)
    if heldout.any():
        table["heldout"] = heldout
    return table


# IsoFLOP levels: runs whose compute lies within this many decades of a level's centre share it.
# Chinchilla's budgets are ≥ 0.2 decades apart and their digitised runs scatter by about ±0.04; a
# sweep's runs land within a few per cent of their budget.
_LEVEL_HALF_WIDTH_DECADES = 0.05
_MIN_PER_LEVEL = 5
_MIN_LEVELS = 3


def compute_levels(
    flops: np.ndarray, half_width: float = _LEVEL_HALF_WIDTH_DECADES
) -> list[np.ndarray]:
    """Group runs into IsoFLOP levels: indices of each group, by increasing compute.

    Greedy mode seeking: the run with the most neighbours within ``half_width`` decades seeds a
    level that takes those neighbours; repeat on what is left while a level still gathers
    ``_MIN_PER_LEVEL`` runs. Unlike splitting at gaps, a chain of scattered runs between two
    budgets never merges them.
    """
    log_c = np.log10(np.asarray(flops, dtype=float))
    free = np.ones(len(log_c), bool)
    groups = []
    while free.any():
        idx = np.flatnonzero(free)
        near = np.abs(log_c[idx][:, None] - log_c[idx][None, :]) <= half_width
        counts = near.sum(axis=1)
        best = int(np.argmax(counts))
        if counts[best] < _MIN_PER_LEVEL:
            break
        members = idx[near[best]]
        groups.append(members)
        free[members] = False
    return sorted(groups, key=lambda g: float(np.median(log_c[g])))


def _isoflop(
    runs: Runs, names: Sequence[str], wanted: bool | None
) -> tuple[
    tuple[IsoFlopProfile, ...], Curve | None, tuple[float, tuple[float, float] | None] | None
]:
    """IsoFLOP profiles: a parabola in ln N per compute level, and ln N_opt against ln C."""
    if wanted is False:
        return (), None, None
    frame = runs.frame
    flops = frame["flops"].to_numpy(float)
    groups = compute_levels(flops)
    if len(groups) < _MIN_LEVELS and not wanted:
        return (), None, None
    profiles = []
    for g in groups:
        n = frame["params"].to_numpy(float)[g]
        loss = frame["loss"].to_numpy(float)[g]
        if len(np.unique(n)) < 3:
            continue
        x = np.log(n)
        # np.polyfit: least squares on the parabola's three coefficients, as Hoffmann et al.
        # (2022, approach 2) fit each IsoFLOP profile.
        coef = np.polyfit(x, loss, 2)
        grid = np.linspace(x.min(), x.max(), 40)
        curve = Curve(np.exp(grid), np.polyval(coef, grid))
        n_opt = l_opt = None
        if coef[0] > 0:
            x_opt = -coef[1] / (2 * coef[0])
            if x.min() <= x_opt <= x.max():  # a minimum outside the runs is a guess, not data
                n_opt, l_opt = float(np.exp(x_opt)), float(np.polyval(coef, x_opt))
        level = float(np.exp(np.mean(np.log(flops[g]))))
        profiles.append(
            IsoFlopProfile(level, n, loss, tuple(names[i] for i in g), curve, n_opt, l_opt)
        )
    with_opt = [p for p in profiles if p.params_opt is not None]
    fit_curve = exponent = None
    if len(with_opt) >= 2:
        c = np.log([p.flops for p in with_opt])
        n = np.log([p.params_opt for p in with_opt])
        slope, intercept = np.polyfit(c, n, 1)
        xs = np.geomspace(min(p.flops for p in profiles), flops.max() * 1.5, 30)
        fit_curve = Curve(
            xs,
            np.exp(intercept + slope * np.log(xs)),
            label=f"fit to minima: N_opt ∝ C^{slope:.3f}",
        )
        exponent = (float(slope), None)
    return tuple(profiles), fit_curve, exponent
