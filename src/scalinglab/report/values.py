"""The values a report shows: frozen dataclasses of arrays, made once and only drawn after.

:func:`scalinglab.report.content.build_content` fills them from the runs, the fit and the
planner; :mod:`scalinglab.report.figures` and :mod:`scalinglab.report.html` only draw and format
them, so they can be tested on any numbers without a fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
    """One planned run: where it sits on the frontier, with its prediction intervals."""

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
        The prediction interval for that run and its level (``None`` without one).
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
