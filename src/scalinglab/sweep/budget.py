"""The sweep plan: a design under its budget (FLOPs or wall clock), timed and ordered.

:func:`plan_sweep` designs the runs (:mod:`.design`), trims or refuses what is over budget,
orders the runs longest first and checks coverage (:mod:`.coverage`). Wall time comes from a
measured :class:`ThroughputModel` and a longest-first schedule over the workers.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from scalinglab.counting import TransformerShape, flops_per_token
from scalinglab.sweep.coverage import Coverage, check_coverage
from scalinglab.sweep.design import design_runs
from scalinglab.sweep.runspec import RunSpec
from scalinglab.sweep.spec import SpecError, SweepSpec

__all__ = [
    "BudgetError",
    "Plan",
    "ThroughputModel",
    "makespan_s",
    "plan_sweep",
    "with_throughput",
]


class BudgetError(SpecError):
    """A design that does not fit its budget (and the spec says to refuse), or cannot be timed."""


@dataclass(frozen=True)
class ThroughputModel:
    """Training speed on one device, measured at a few model sizes.

    log(tokens/s) is interpolated linearly in log(FLOPs per token) between the measured
    sizes and held at the end values outside them (a small model is not faster than the
    smallest one measured: per-step overheads dominate there).

    Attributes
    ----------
    flops_per_token
        Per-operation training FLOPs per token of each measured shape (increasing).
    tokens_per_s
        Measured training throughput of each, with ``threads`` torch threads.
    device, threads
        Where it was measured.
    """

    flops_per_token: tuple[float, ...]
    tokens_per_s: tuple[float, ...]
    device: str
    threads: int

    def tokens_per_second(self, shape: TransformerShape) -> float:
        """Estimated training tokens per second of ``shape``."""
        x = math.log(flops_per_token(shape).per_operation)
        xs = np.log(np.asarray(self.flops_per_token, dtype=float))
        ys = np.log(np.asarray(self.tokens_per_s, dtype=float))
        return float(math.exp(np.interp(x, xs, ys)))

    def seconds(self, run: RunSpec) -> float:
        """Estimated wall time of ``run``: training (cooldowns included) plus evaluation.

        Evaluation is a forward pass only, a third of a training step's FLOPs (the backward
        pass costs twice the forward, Kaplan et al. 2020, §2.1), so ``eval_tokens`` cost as
        much as a third as many training tokens. The trainer evaluates every
        ``eval_interval_tokens`` (default: a tenth of the run), at the end, and after each
        branched cooldown.
        """
        speed = self.tokens_per_second(run.shape)
        config = run.config_dict
        step = int(config.get("batch_size") or 1) * run.shape.context_length
        steps = max(1, round(run.tokens / step))
        interval = config.get("eval_interval_tokens") or steps * step / 10
        every = max(1, round(interval / step))
        evals = math.ceil(steps / every) + len(run.branches)
        eval_tokens = int(config.get("eval_tokens") or 0)
        return (run.cost_tokens + evals * eval_tokens / 3.0) / speed


def makespan_s(durations_s: Sequence[float], workers: int) -> float:
    """Wall time of running jobs longest-first on ``workers`` identical workers.

    Longest-processing-time-first is within 4/3 of the optimum (Graham 1969), and it is
    the order the executors submit in, so the estimate matches what happens.
    """
    finish = [0.0] * max(1, workers)
    for d in sorted(durations_s, reverse=True):
        earliest = heapq.heappop(finish)
        heapq.heappush(finish, earliest + d)
    return max(finish)


@dataclass(frozen=True)
class Plan:
    """A sweep ready to run: the runs after the budget, their cost, and their coverage.

    Attributes
    ----------
    spec
        The spec it was planned from.
    runs
        Runs in submission order (longest first).
    total_flops
        Compute of every run, cooldowns included, by the sweep's counting method.
    est_wall_s
        Estimated wall time on ``workers`` workers (``None`` without a throughput model).
    trimmed
        Why runs were dropped to meet the budget (empty if none were).
    notes
        What snapping sizes and lengths to real models changed.
    """

    spec: SweepSpec
    runs: tuple[RunSpec, ...]
    total_flops: float
    workers: int
    est_wall_s: float | None
    throughput: ThroughputModel | None
    trimmed: tuple[str, ...]
    notes: tuple[str, ...]
    coverage: Coverage

    @property
    def points(self) -> int:
        """Points of the law the plan yields."""
        return sum(r.points for r in self.runs)

    def run_seconds(self, run: RunSpec) -> float | None:
        """Estimated wall time of one run (``None`` without a throughput model)."""
        return None if self.throughput is None else self.throughput.seconds(run)


def _est_wall(runs: Sequence[RunSpec], tp: ThroughputModel | None, workers: int) -> float | None:
    if tp is None:
        return None
    return makespan_s([tp.seconds(r) for r in runs], workers)


def plan_sweep(
    spec: SweepSpec,
    *,
    workers: int | None = None,
    throughput: ThroughputModel | Callable[[list[RunSpec]], ThroughputModel] | None = None,
    vocab_size: int | None = None,
) -> Plan:
    """Design the sweep, apply its budget, order the runs and check coverage.

    Parameters
    ----------
    spec
        A validated spec.
    workers
        Parallel workers (default: the spec's ``execution.workers``); sets the wall estimate.
    throughput
        A measured :class:`ThroughputModel`, or a function that measures one for the
        designed runs (called only once the runs are known). Needed for a wall-clock budget.
    vocab_size
        The corpus's vocabulary size (read from the corpus when ``None``).

    Raises
    ------
    BudgetError
        The design is over budget and ``budget.on_over = "refuse"``, trimming leaves nothing,
        or a wall-clock budget was given without a throughput model.
    SpecError
        A size or length that cannot be built.
    """
    workers = workers or spec.execution.workers
    runs, notes = design_runs(spec, vocab_size=vocab_size)
    budget = spec.budget
    measure = throughput if callable(throughput) else None
    tp = None if callable(throughput) else throughput
    if budget.wall_clock_s is not None:
        if measure is not None:
            tp = measure(runs)  # needed to apply the budget at all
        if tp is None:
            raise BudgetError(
                "budget.wall_clock_s: a wall-clock budget needs a measured throughput; plan "
                "it with the probe on (the default of `scalinglab sweep plan`)",
                field="budget.wall_clock_s",
            )
    trimmed: list[str] = []

    def over(rs: Sequence[RunSpec]) -> str | None:
        if budget.flops is not None:
            need = sum(r.cost_flops for r in rs)
            if need > budget.flops:
                return f"needs {need:.3g} FLOP, over budget.flops = {budget.flops:.3g}"
        if budget.wall_clock_s is not None:
            need_s = _est_wall(rs, tp, workers) or 0.0
            if need_s > budget.wall_clock_s:
                return (
                    f"needs an estimated {need_s:,.0f} s on {workers} worker(s), over "
                    f"budget.wall_clock_s = {budget.wall_clock_s:,.0f}"
                )
        return None

    reason = over(runs)
    if reason is not None:
        if budget.on_over == "refuse":
            key = "budget.flops" if budget.flops is not None else "budget.wall_clock_s"
            raise BudgetError(
                f'{key}: the design {reason}; shrink the design or set budget.on_over = "trim"',
                field=key,
            )
        while reason is not None and runs:
            runs, dropped = _trim_once(spec, runs)
            trimmed.append(f"{reason}: dropped {dropped}")
            reason = over(runs)
        if not runs:
            raise BudgetError(
                f"budget: even the cheapest part of the design {trimmed[-1]}", field="budget"
            )
    if tp is None and measure is not None:  # measured only once the design is known to fit
        tp = measure(runs)
    # Longest first: the executors submit in this order, which keeps the makespan short.
    order = sorted(runs, key=lambda r: (-(tp.seconds(r) if tp else r.cost_flops), r.key))
    return Plan(
        spec=spec,
        runs=tuple(order),
        total_flops=sum(r.cost_flops for r in runs),
        workers=workers,
        est_wall_s=_est_wall(order, tp, workers),
        throughput=tp,
        trimmed=tuple(trimmed),
        notes=tuple(notes),
        coverage=check_coverage(order),
    )


def _trim_once(spec: SweepSpec, runs: list[RunSpec]) -> tuple[list[RunSpec], str]:
    """Drop the most expensive coherent part of a design: a level, a size, or one run."""
    if spec.design.kind == "isoflop":
        top = max(r.compute_level or 0.0 for r in runs)
        kept = [r for r in runs if r.compute_level != top]
        return kept, f"the level {top:.3g} FLOP ({len(runs) - len(kept)} runs)"
    if spec.design.kind == "wsd":
        largest = max(runs, key=lambda r: r.params)
        kept = [r for r in runs if r is not largest]
        return kept, f"the size N={largest.params:,} ({largest.points} points)"
    dearest = max(runs, key=lambda r: r.cost_flops)
    kept = [r for r in runs if r is not dearest]
    return (
        kept,
        f"the run N={dearest.params:,}, D={dearest.tokens:,} ({dearest.cost_flops:.3g} FLOP)",
    )


def with_throughput(plan: Plan, throughput: ThroughputModel, workers: int | None = None) -> Plan:
    """The same plan re-timed for another throughput model or worker count."""
    workers = workers or plan.workers
    return replace(
        plan,
        workers=workers,
        throughput=throughput,
        est_wall_s=_est_wall(plan.runs, throughput, workers),
    )
