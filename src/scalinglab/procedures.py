"""Named fitting procedures: documented recipes for fitting a scaling law meant to extrapolate.

A *procedure* is everything between a runs table and a prediction that is not the data: the law
form, the robust loss and its δ, the weight of each run, which runs to trust, the bounds on the
exponents, and, for the composite procedures, how several fits are averaged or chosen. Naming
them lets a backtest compare them on equal terms and lets a user say exactly what they did.

Three kinds:

``single``
    One law fitted once by :func:`scalinglab.fit.fit` on the runs the recipe trusts.
``average``
    Several single recipes fitted on the same runs; the prediction is the weighted geometric mean
    of theirs. Weights are equal, or (``weighting="backtest"``) proportional to 1/err² of each
    member's backtest *inside* the fitted runs (see :mod:`scalinglab.backtest`).
``auto``
    Chooses one of its candidates by a rolling-origin backtest inside the fitted runs (nested:
    the runs above the user's cut are never seen) and fits it: its ``default`` (a hedge) unless
    another candidate predicted better at every inner origin. It says which and why
    (:func:`scalinglab.backtest.fit_procedure`).

Every recipe is listed in :data:`PROCEDURES` and returned by :func:`get_procedure`.
``besiroglu2024`` is the published procedure (Besiroglu et al. 2024, following Hoffmann et al.
2022, App. D.2): Chinchilla form, Huber δ = 1e-3 on log loss summed over every run, unweighted,
many starts, the fit engine's wide default bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from scalinglab.fit import PLAUSIBLE_EXPONENTS, Fit, fit, implausible_exponents
from scalinglab.runs import Runs

__all__ = [
    "DEFAULT_PROCEDURE",
    "PLAUSIBLE_EXPONENTS",
    "PROCEDURES",
    "Procedure",
    "ProcedureError",
    "fit_recipe",
    "get_procedure",
    "implausible_exponents",
    "near_frontier_mask",
    "run_weights",
    "trust_mask",
    "trusted_runs",
]

DEFAULT_PROCEDURE = "auto"
KINDS = ("single", "average", "auto")


class ProcedureError(ValueError):
    """Unknown procedure name or inconsistent recipe."""


@dataclass(frozen=True)
class Procedure:
    """A named, documented recipe for fitting runs to extrapolate from them.

    Attributes
    ----------
    name:
        Registry name (``--procedure NAME``).
    summary:
        One line saying what the recipe does and why.
    kind:
        ``"single"``, ``"average"`` or ``"auto"`` (see the module docstring).
    law, law_options:
        The law form of a single recipe (a name of :data:`scalinglab.laws.LAWS`).
    loss, huber_delta:
        Robust loss of log residuals (see :func:`scalinglab.fit.fit`).
    bounds:
        Natural bounds overriding the law's (e.g. ``{"alpha": (0.05, 1.0)}``): a prior that
        keeps a flat direction of the objective from landing on an absurd exponent.
    flops_weight_power:
        Run weight ∝ (C / C_max)^p: p > 0 leans on the largest budgets, closest to the target.
    min_flops_ratio:
        Trust only runs with C ≥ ``min_flops_ratio`` · C_max: the smallest budgets are often
        dominated by warmup and schedule effects (Porian et al. 2024).
    near_frontier:
        Trust only runs whose loss is within this fraction of the lowest loss at similar compute
        (within a factor ``frontier_window`` in C): far-off-optimal runs (a huge model trained on
        a few million tokens) follow the schedule, not the law, and the target of an
        extrapolation is nearly always near the compute-optimal frontier.
    frontier_window:
        Runs whose compute differs by less than this factor count as one budget.
    members:
        Names of the single recipes an ``average`` combines.
    weighting:
        ``"equal"`` or ``"backtest"`` (weights ∝ 1/err² of each member's inner backtest).
    candidates:
        Names of the recipes an ``auto`` chooses among.
    default:
        The candidate an ``auto`` keeps unless another predicted better at every inner cut.
    reference:
        Where the recipe comes from.
    """

    name: str
    summary: str
    kind: str = "single"
    law: str = "chinchilla"
    law_options: Mapping[str, Any] = field(default_factory=dict)
    loss: str = "huber"
    huber_delta: float = 1e-3
    bounds: Mapping[str, tuple[float, float]] | None = None
    flops_weight_power: float = 0.0
    min_flops_ratio: float | None = None
    near_frontier: float | None = None
    frontier_window: float = 2**0.25
    members: tuple[str, ...] = ()
    weighting: str = "equal"
    candidates: tuple[str, ...] = ()
    default: str | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ProcedureError(f"procedure kind must be one of {', '.join(KINDS)}")
        if self.kind == "average" and len(self.members) < 2:
            raise ProcedureError(f"average procedure {self.name!r} needs two or more members")
        if self.kind == "auto" and not self.candidates:
            raise ProcedureError(f"auto procedure {self.name!r} needs candidates")
        if self.default is not None and self.default not in self.candidates:
            raise ProcedureError(f"default {self.default!r} of {self.name!r} is not a candidate")
        if self.weighting not in ("equal", "backtest"):
            raise ProcedureError("weighting must be 'equal' or 'backtest'")
        if self.min_flops_ratio is not None and not 0 < self.min_flops_ratio <= 1:
            raise ProcedureError("min_flops_ratio must lie in (0, 1]")
        if self.near_frontier is not None and not self.near_frontier > 0:
            raise ProcedureError("near_frontier must be > 0")
        if not self.frontier_window > 1:
            raise ProcedureError("frontier_window must be > 1")
        object.__setattr__(self, "law_options", MappingProxyType(dict(self.law_options)))
        if self.bounds is not None:
            object.__setattr__(self, "bounds", MappingProxyType(dict(self.bounds)))

    def describe(self) -> dict[str, Any]:
        """The recipe as a JSON-ready dict (only the fields that mean something for its kind)."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "summary": self.summary}
        if self.kind == "single":
            d.update(
                law=self.law,
                law_options=dict(self.law_options),
                loss=self.loss,
                huber_delta=self.huber_delta,
                bounds=None
                if self.bounds is None
                else {k: list(v) for k, v in self.bounds.items()},
                flops_weight_power=self.flops_weight_power,
                min_flops_ratio=self.min_flops_ratio,
                near_frontier=self.near_frontier,
            )
        elif self.kind == "average":
            d.update(members=list(self.members), weighting=self.weighting)
        else:
            d.update(candidates=list(self.candidates), default=self.default)
        if self.reference:
            d["reference"] = self.reference
        return d


# ---------------------------------------------------------------------------------------------
# which runs to trust, and how much


def near_frontier_mask(
    flops: np.ndarray, loss: np.ndarray, tolerance: float, window: float = 2**0.25
) -> np.ndarray:
    """Runs whose loss is within ``tolerance`` (a fraction) of the lowest loss among the runs
    whose compute lies within a factor ``window`` of theirs.

    On an IsoFLOP grid (budgets 2× apart) each budget is its own neighbourhood; on scattered
    compute the neighbourhood slides. A run alone in its neighbourhood is always kept.
    """
    flops = np.asarray(flops, dtype=float)
    loss = np.asarray(loss, dtype=float)
    n = flops.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(flops, kind="stable")
    logc = np.log(flops[order])
    sorted_loss = loss[order]
    half = math.log(window)
    lo = np.searchsorted(logc, logc - half, side="left")
    hi = np.searchsorted(logc, logc + half, side="right")  # exclusive
    # Range minimum by a sparse table: O(n log n), and exact for any window (a sliding minimum
    # over a value window, which scipy.ndimage's index-window filters do not offer).
    table = [sorted_loss]
    span = 1
    while 2 * span <= n:
        prev = table[-1]
        table.append(np.minimum(prev[:-span], prev[span:]))
        span *= 2
    length = hi - lo
    level = np.floor(np.log2(np.maximum(length, 1))).astype(int)
    ref = np.empty(n)
    for k in np.unique(level):
        rows = np.flatnonzero(level == k)
        t = table[k]
        a = lo[rows]
        b = hi[rows] - (1 << k)
        ref[rows] = np.minimum(t[a], t[b])
    keep_sorted = sorted_loss <= ref * (1.0 + tolerance)
    keep = np.empty(n, dtype=bool)
    keep[order] = keep_sorted
    return keep


def trust_mask(procedure: Procedure, runs: Runs) -> tuple[np.ndarray, list[str]]:
    """Which runs a single recipe trusts (a boolean mask) and notes on what it left out, why."""
    mask = np.ones(len(runs), dtype=bool)
    notes: list[str] = []
    flops = runs.column("flops")
    if procedure.min_flops_ratio is not None and procedure.min_flops_ratio < 1:
        floor = float(flops.max()) * procedure.min_flops_ratio
        small = flops < floor * (1 - 1e-12)
        if small.any():
            notes.append(
                f"left out {int(small.sum())} runs below {floor:.3g} FLOP "
                f"(1/{1 / procedure.min_flops_ratio:.3g} of the largest budget)"
            )
        mask &= ~small
    if procedure.near_frontier is not None:
        near = near_frontier_mask(
            flops[mask],
            runs.column("loss")[mask],
            procedure.near_frontier,
            procedure.frontier_window,
        )
        dropped = int((~near).sum())
        if dropped:
            notes.append(
                f"left out {dropped} runs more than {procedure.near_frontier:.0%} above the "
                "lowest loss at their compute"
            )
        idx = np.flatnonzero(mask)
        mask[idx[~near]] = False
    return mask, notes


def trusted_runs(procedure: Procedure, runs: Runs) -> tuple[Runs, list[str]]:
    """The runs a single recipe fits on, and notes saying what was left out and why."""
    mask, notes = trust_mask(procedure, runs)
    if mask.all():
        return runs, notes
    return runs.subset(mask, "; ".join(notes) if notes else None), notes


def run_weights(procedure: Procedure, runs: Runs) -> np.ndarray | None:
    """Per-run weights of a single recipe (None: every run weighs 1)."""
    if procedure.flops_weight_power == 0:
        return None
    flops = runs.column("flops")
    return (flops / flops.max()) ** procedure.flops_weight_power


def fit_recipe(
    procedure: Procedure | str,
    runs: Runs,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    target: Mapping[str, float] | None = None,
    refine: int = 64,
    n_jobs: int | None = None,
) -> Fit:
    """Fit a single recipe to ``runs``: trust filter, weights, bounds, law, robust loss.

    Parameters
    ----------
    procedure:
        A ``single`` :class:`Procedure` or its name.
    runs:
        The runs to fit (all of them are candidates; the recipe decides which it trusts).
    bootstrap, seed, target, refine, n_jobs:
        Passed to :func:`scalinglab.fit.fit`.

    Returns
    -------
    Fit
        With ``diagnostics["procedure"]`` naming the recipe and ``diagnostics["trusted_runs"]``
        how many runs it fitted on.
    """
    proc = get_procedure(procedure) if isinstance(procedure, str) else procedure
    if proc.kind != "single":
        raise ProcedureError(
            f"procedure {proc.name!r} is an {proc.kind}; fit it with scalinglab.fit_procedure"
        )
    trusted, notes = trusted_runs(proc, runs)
    result = fit(
        proc.law,
        trusted,
        loss=proc.loss,
        huber_delta=proc.huber_delta,
        law_options=dict(proc.law_options) or None,
        weights=run_weights(proc, trusted),
        bounds=None if proc.bounds is None else dict(proc.bounds),
        bootstrap=bootstrap,
        seed=seed,
        target=target,
        refine=refine,
        n_jobs=n_jobs,
    )
    diagnostics = {
        **result.diagnostics,
        "procedure": proc.name,
        "trusted_runs": len(trusted),
        "given_runs": len(runs),
        "trust_notes": notes,
    }
    return replace(result, diagnostics=diagnostics)


# ---------------------------------------------------------------------------------------------
# the registry

_CHINCHILLA_PRIOR = {"alpha": (0.05, 1.0), "beta": (0.05, 1.0)}
_KAPLAN_PRIOR = {"alpha_N": (0.01, 1.0), "alpha_D": (0.01, 1.0)}
# Runs within 5% of the best loss at their compute: on Porian et al.'s IsoFLOP grids that keeps
# the two to six runs around each curve's minimum, the part of the curve a target lies on.
_FRONTIER = 0.05

_REGISTRY: list[Procedure] = [
    Procedure(
        name="besiroglu2024",
        summary="Chinchilla form, Huber δ=1e-3 on log loss summed over every run, many starts, "
        "wide bounds: the published procedure",
        reference="Besiroglu et al. 2024 (arXiv:2404.10102); Hoffmann et al. 2022, App. D.2",
    ),
    Procedure(
        name="bounded",
        summary="besiroglu2024 with the exponents bounded to [0.05, 1]: no absurd exponent",
        bounds=_CHINCHILLA_PRIOR,
    ),
    Procedure(
        name="compute-weighted",
        summary="bounded, runs weighted by sqrt(C/C_max), budgets below C_max/100 left out: "
        "leans on the runs closest to the target",
        bounds=_CHINCHILLA_PRIOR,
        flops_weight_power=0.5,
        min_flops_ratio=0.01,
    ),
    Procedure(
        name="frontier",
        summary="bounded Chinchilla form on the runs within 5% of the best loss at their compute "
        "and budgets ≥ C_max/16 (far-off-optimal and tiny runs follow the schedule, not the law)",
        bounds=_CHINCHILLA_PRIOR,
        near_frontier=_FRONTIER,
        min_flops_ratio=1 / 16,
        reference="Porian et al. 2024 (warmup and schedule effects at small budgets)",
    ),
    Procedure(
        name="kaplan-frontier",
        summary="Kaplan et al.'s joint form L=[(N_c/N)^(α_N/α_D)+D_c/D]^α_D (no irreducible "
        "term) on the same trusted runs as frontier",
        law="kaplan-nd",
        bounds=_KAPLAN_PRIOR,
        near_frontier=_FRONTIER,
        min_flops_ratio=1 / 16,
        reference="Kaplan et al. 2020, eq. 1.5",
    ),
    Procedure(
        name="broken-frontier",
        summary="a broken power law in compute, L(C)=E+A·C^-α·(1+C/C_b)^-Δ, on the runs within "
        "5% of the best loss at their compute; the break may only flatten the law (Δ ≤ 0)",
        law="broken-power",
        law_options={"x": "flops"},
        # A break that steepens beyond the data would promise a faster fall than any seen:
        # the prior allows only the flattening that small-budget warmup effects produce.
        bounds={"alpha": (0.0, 2.0), "delta": (-1.0, 0.0)},
        near_frontier=_FRONTIER,
        reference="Caballero et al. 2022 (broken neural scaling laws), one break",
    ),
    Procedure(
        name="average-frontier",
        summary="geometric mean of frontier and kaplan-frontier: a form with an irreducible loss "
        "flattens too early, one without it too late; the average hedges",
        kind="average",
        members=("frontier", "kaplan-frontier"),
    ),
    Procedure(
        name="stacked-frontier",
        summary="frontier and kaplan-frontier averaged with weights 1/err² from their backtest "
        "inside the fitted runs",
        kind="average",
        members=("frontier", "kaplan-frontier"),
        weighting="backtest",
    ),
]
# Not candidates of auto: stacked-frontier, whose weights come from the same inner backtest that
# would score it (its inner error is optimistic, the comparison unfair), and broken-frontier,
# whose fits cost 5–10× the others' (no closed-form Hessian) and which the inner backtest never
# preferred on the reference data.
_AUTO_CANDIDATES = (
    "besiroglu2024",
    "bounded",
    "compute-weighted",
    "frontier",
    "kaplan-frontier",
    "average-frontier",
)
_REGISTRY.append(
    Procedure(
        name="auto",
        summary="backtests "
        + ", ".join(_AUTO_CANDIDATES)
        + " inside the fitted runs only (cuts at C_max/2, /4, /8) and keeps average-frontier "
        "unless another predicted better at every cut",
        kind="auto",
        candidates=_AUTO_CANDIDATES,
        default="average-frontier",
    )
)

PROCEDURES: Mapping[str, Procedure] = MappingProxyType({p.name: p for p in _REGISTRY})


def get_procedure(name: str | Procedure) -> Procedure:
    """Return the procedure registered as ``name`` (a :class:`Procedure` is returned as is).

    Raises
    ------
    ProcedureError
        Unknown name; the message lists the known ones.
    """
    if isinstance(name, Procedure):
        return name
    try:
        return PROCEDURES[name]
    except KeyError:
        raise ProcedureError(
            f"unknown procedure {name!r}; choose one of {', '.join(PROCEDURES)}"
        ) from None
