"""What a report shows, as plain values: the runs, curves with bands, profiles, tables.

The report is drawn in two steps. :func:`build_content` asks the fit and the planner everything
the page needs (predictions, the compute-optimal frontier and its bootstrap band, IsoFLOP
parabolas, the planned allocation) and stores the answers as arrays in frozen dataclasses.
:mod:`scalinglab.report.figures` and :mod:`scalinglab.report.html` then only draw and format those
values, so they can be tested on any numbers without a fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalinglab.runs import Runs

if TYPE_CHECKING:
    from scalinglab.fitting import Fit

__all__ = [
    "Curve",
    "IsoFlopProfile",
    "PlanPoint",
    "ReportContent",
    "RunPoints",
    "Samples",
    "Slice",
    "TrainedRun",
    "TrainingCurve",
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
class TrainingCurve:
    """The validation loss of one run as it trained, for the training-curves figure."""

    label: str
    params: float
    tokens: np.ndarray
    loss: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", _frozen_array(self.tokens))
        object.__setattr__(self, "loss", _frozen_array(self.loss))


@dataclass(frozen=True)
class TrainedRun:
    """A run chosen from the fit before it was trained: the law's prediction against the loss.

    Attributes
    ----------
    label
        What the run is (``"plan"``, ``"alternative: 20 tokens per parameter"``).
    params, tokens, flops
        The run as trained (N as the fit counts it, D, C by the fit's FLOP count).
    predicted
        The fit's loss at (N, D), made before training.
    interval, level
        The bootstrap interval of that prediction and its level (``None`` without one).
    measured
        The validation loss the run reached (``None`` if it was not trained).
    """

    label: str
    params: float
    tokens: float
    flops: float
    predicted: float
    interval: tuple[float, float] | None = None
    level: float | None = None
    measured: float | None = None

    @property
    def rel_error(self) -> float | None:
        """measured / predicted − 1 (``None`` until measured)."""
        return None if self.measured is None else self.measured / self.predicted - 1.0

    @property
    def inside(self) -> bool | None:
        """Whether the measured loss lies inside the prediction's interval."""
        if self.measured is None or self.interval is None:
            return None
        return bool(self.interval[0] <= self.measured <= self.interval[1])


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
    curves: tuple[TrainingCurve, ...] = ()
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
    answer: tuple[str, ...] = ()
    trained: tuple[TrainedRun, ...] = ()
    trained_table: pd.DataFrame | None = None

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
    """A short name per run: its point id or ``run_id`` (and ``group``), else its row number.

    A store's WSD cooldowns share their trunk's ``run_id`` but each has its own ``point_id``.
    """
    n = len(frame)
    column = "point_id" if "point_id" in frame else "run_id" if "run_id" in frame else None
    ids = frame[column].astype(str).tolist() if column else [f"row {i + 1}" for i in range(n)]
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

    if curves is not None and len(curves):
        fields["curves"] = _training_curves(frame, curves)

    if trained:
        fields["trained"] = tuple(trained)
        fields["trained_table"] = _trained_table(trained)
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
        run_table=_run_table(frame, names, predicted, heldout),
        commands=tuple(commands),
        notes=tuple(notes),
        warnings=tuple(dict.fromkeys(warn)),
        facts=tuple(facts),
        answer=tuple(answer),
        **fields,
    )


def _trained_table(trained: Sequence[TrainedRun]) -> pd.DataFrame:
    rows = []
    for run in trained:
        level = f"{run.level:.0%} interval" if run.level else "interval"
        rows.append(
            {
                "run": run.label,
                "N": run.params,
                "D": run.tokens,
                "D/N": run.tokens / run.params,
                "C (FLOP)": run.flops,
                "predicted loss": run.predicted,
                level: run.interval,
                "measured loss": run.measured,
                "measured/predicted − 1 (%)": (
                    None if run.rel_error is None else 100.0 * run.rel_error
                ),
                "inside the interval": None
                if run.inside is None
                else "yes"
                if run.inside
                else "no",
            }
        )
    return pd.DataFrame(rows)


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
            "N interval (decades)": a.params_decades,
            "a (N ∝ C^a)": a.a,
            f"a {level:.0%} interval": a.a_interval,
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


# Runs whose compute differs by less than this fraction share an IsoFLOP level (the default of
# scalinglab.approaches.isoflop: a sweep's runs land within a few per cent of their budget).
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
