"""A plan's options and limits: checked options, caps on N and unique D, counted FLOPs per token.

Training costs :data:`~scalinglab.counting.FLOPS_PER_PARAM_TOKEN` (6) FLOP per parameter per
token (Kaplan et al. 2020, §2.1), or, for real shapes, the per-operation count of
:mod:`scalinglab.counting`; inference is the forward pass alone, a third of it (2·N per token,
Sardana & Frankle 2023, eq. 2).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from scalinglab.counting import (
    FLOPS_PER_PARAM_TOKEN,
    TransformerShape,
    count_params,
    flops_per_token,
)
from scalinglab.plan.results import PlanError
from scalinglab.plan.surface import Surface

if TYPE_CHECKING:
    from scalinglab.plan.solvers import Solution

__all__ = [
    "FORWARD_SHARE",
    "MAX_COUNT",
    "CountedFlops",
    "Limits",
    "Options",
    "check_level",
    "check_options",
    "check_positive",
    "param_bounds",
    "resolve_limits",
]

# Inference is the forward pass alone: 2 of the 6 FLOP per parameter per token.
FORWARD_SHARE = 1.0 / 3.0
# Search range for N and D when nothing else bounds them: beyond 10^30 parameters or tokens no
# plan means anything, and the bound keeps every input finite for the laws' logs.
MAX_COUNT = 1e30


@dataclass(frozen=True)
class Limits:
    max_params: float | None = None
    max_unique_tokens: float | None = None
    counted: CountedFlops | None = None

    def flops_per_token(self, params: np.ndarray) -> np.ndarray:
        if self.counted is None:
            return FLOPS_PER_PARAM_TOKEN * params
        return self.counted(params)

    @property
    def any_cap(self) -> bool:
        return self.max_params is not None or self.max_unique_tokens is not None


@dataclass(frozen=True)
class CountedFlops:
    """Training FLOPs per token as a smooth function of N, from real shapes (counting.py).

    Real shapes make FLOPs per token a step function of N; the search uses a piecewise-linear
    interpolation of ln(FLOPs per token / N) in ln N over shapes spanning ``[lo, hi]``, and the
    plan then snaps to the nearest real shape.
    """

    log_n: np.ndarray
    log_ratio: np.ndarray
    options: Mapping[str, Any]
    basis: str

    def __call__(self, params: np.ndarray) -> np.ndarray:
        params = np.asarray(params, dtype=float)
        ratio = np.exp(np.interp(np.log(params), self.log_n, self.log_ratio))
        return params * ratio

    @property
    def bounds(self) -> tuple[float, float]:
        return float(np.exp(self.log_n[0])), float(np.exp(self.log_n[-1]))

    def shape(self, params: float) -> tuple[TransformerShape, float, float]:
        """The real shape nearest ``params``: (shape, its N in the basis, FLOPs per token)."""
        if not math.isfinite(params):
            raise PlanError("no real shape reaches this plan", field="shape")
        shape = _shape_for_params(params, self.options, self.basis)
        return shape, _basis_params(shape, self.basis), float(flops_per_token(shape).per_operation)


def _shape_for_params(params: float, options: Mapping[str, Any], basis: str) -> TransformerShape:
    try:
        from scalinglab.train.shapes import shape_for_params  # lazy: no torch for planning
    except ImportError as exc:
        raise PlanError(
            "counted FLOPs need scalinglab.train.shapes.shape_for_params, which this install "
            "lacks; plan with 6·N·D instead (no shape)",
            field="shape",
        ) from exc
    try:
        return shape_for_params(float(params), basis=basis, **dict(options))
    except (TypeError, ValueError) as exc:
        raise PlanError(f"shape options {dict(options)}: {exc}", field="shape") from exc


def _basis_params(shape: TransformerShape, basis: str) -> float:
    counts = count_params(shape)
    return float(counts.non_embedding if basis == "non_embedding" else counts.total)


def _counted_flops(
    options: Mapping[str, Any], basis: str, around: float, span_decades: float = 1.0
) -> CountedFlops:
    """Tabulate counted FLOPs per token at 11 real shapes over ``around`` × 10^±span_decades.

    FLOPs per token per parameter change slowly with N (a few per cent per 0.2 decade), so a
    coarse table interpolated in log space is accurate; the plan snaps to a real shape anyway.
    """
    if "vocab_size" not in options or "context_length" not in options:
        raise PlanError("shape options need vocab_size and context_length", field="shape")
    targets = np.geomspace(around / 10**span_decades, around * 10**span_decades, 11)
    pairs: dict[float, float] = {}
    for target in targets:
        shape = _shape_for_params(float(target), options, basis)
        n = _basis_params(shape, basis)
        pairs[n] = flops_per_token(shape).per_operation / n
    if len(pairs) < 2:
        raise PlanError(f"no range of real shapes around {around:.3g} parameters", field="shape")
    log_n = np.log(np.array(sorted(pairs)))
    log_ratio = np.log(np.array([pairs[n] for n in sorted(pairs)]))
    return CountedFlops(log_n, log_ratio, MappingProxyType(dict(options)), basis)


def param_bounds(limits: Limits, flops: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """ln N search bounds before the budget's own: [ln 1, ln min(cap, 10^30)] (or a shape table)."""
    lo, hi = 0.0, math.log(MAX_COUNT)
    if limits.counted is not None:
        n_lo, n_hi = limits.counted.bounds
        lo, hi = math.log(n_lo), math.log(n_hi)
    if limits.max_params is not None:
        hi = min(hi, math.log(limits.max_params))
    n = 1 if flops is None else len(flops)
    return lo, np.full(n, hi)


@dataclass(frozen=True)
class Options:
    max_params: float | None
    max_unique_tokens: float | None
    inference_tokens: float | None
    gpu: str
    mfu: float
    count: int
    price_per_gpu_hour: float | None
    pue: float
    level: float
    shape: Mapping[str, Any] | None


def check_positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{name} must be a number > 0, got {value!r}", field=name) from exc
    if not (math.isfinite(value) and value > 0):
        raise PlanError(f"{name} must be a finite number > 0, got {value!r}", field=name)
    return value


def check_level(level: float) -> float:
    if not (isinstance(level, int | float) and 0 < level < 1):
        raise PlanError(f"level must be in (0, 1), got {level!r}", field="level")
    return float(level)


def check_options(
    max_params: float | None,
    max_unique_tokens: float | None,
    inference_tokens: float | None,
    gpu: str,
    mfu: float,
    count: int,
    price_per_gpu_hour: float | None,
    pue: float,
    level: float,
    shape: Mapping[str, Any] | None,
) -> Options:
    inference = None
    if inference_tokens is not None:
        inference = float(inference_tokens)
        if not (math.isfinite(inference) and inference >= 0):
            raise PlanError(
                f"inference_tokens must be a finite number ≥ 0, got {inference!r}",
                field="inference_tokens",
            )
    return Options(
        max_params=check_positive(max_params, "max_params"),
        max_unique_tokens=check_positive(max_unique_tokens, "max_unique_tokens"),
        inference_tokens=inference,
        gpu=gpu,
        mfu=mfu,
        count=count,
        price_per_gpu_hour=price_per_gpu_hour,
        pue=pue,
        level=check_level(level),
        shape=None if shape is None else MappingProxyType(dict(shape)),
    )


def resolve_limits(
    surf: Surface, opts: Options, solve: Callable[[Limits], Solution]
) -> tuple[Limits, list[str]]:
    """The limits of ``opts``; with a shape, a counted-FLOPs table that holds the solution.

    The table is centred on the 6·N·D solution of the same problem (``solve``), and moved
    while the counted solution lands at its edge.
    """
    notes: list[str] = []
    limits = Limits(max_params=opts.max_params, max_unique_tokens=opts.max_unique_tokens)
    if opts.shape is None:
        return limits, notes
    basis = str(getattr(surf.fit, "param_basis", "unknown"))
    if basis not in ("total", "non_embedding"):
        notes.append(
            f"the fit's parameter basis is {basis!r}: counted FLOPs assume N counts "
            "every parameter (total)"
        )
        basis = "total"
    around = float(solve(limits).params[0])
    for _ in range(4):
        if not math.isfinite(around):
            break
        counted = _counted_flops(opts.shape, basis, around)
        limits = dataclasses.replace(limits, counted=counted)
        found = float(solve(limits).params[0])
        lo, hi = counted.bounds
        if not (math.isfinite(found) and (found < lo * 1.05 or found > hi / 1.05)):
            break
        if opts.max_params is not None and found >= opts.max_params * (1 - 1e-9):
            break  # held at the cap, not at the table's edge
        around = found
    return limits, notes
