"""Plan, then train the plan: the runs the demo chooses from its fit, and their predictions.

After the fit the demo plans the compute-optimal run at :data:`BUDGET_MULTIPLE` times the
compute of the largest sweep run, and one alternative at the same compute: the model that
Hoffmann et al.'s (2022) rule of thumb of :data:`ALTERNATIVE_TOKENS_PER_PARAM` tokens per
parameter gives. Both are designed like the sweep's runs (same corpus, recipe, schedule and
seed; N snapped to a real model by the trainer's shape rule, then D = C / 6N in whole steps, so
both train the same compute), predicted from the fit before anything trains, then trained into
the same store, where a second demo finds them finished.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from scalinglab.report.values import TrainedRun

if TYPE_CHECKING:
    import pandas as pd

    from scalinglab.fitting import Fit
    from scalinglab.plan import Allocation
    from scalinglab.procedures import ProcedureFit
    from scalinglab.sweep import Plan, RunSpec, SweepSpec

__all__ = [
    "ALTERNATIVE_TOKENS_PER_PARAM",
    "BUDGET_MULTIPLE",
    "PLAN_LEVEL",
    "CheckPlan",
    "measured",
    "plan_check",
]

# The plan's budget: this many times the compute of the largest run of the sweep.
BUDGET_MULTIPLE = 10.0
# The alternative at equal compute: Hoffmann et al. (2022)'s ~20 tokens per parameter.
ALTERNATIVE_TOKENS_PER_PARAM = 20.0
# Level of the prediction intervals the demo prints and draws.
PLAN_LEVEL = 0.9


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """The runs chosen from the fit, designed and predicted, not yet trained.

    Attributes
    ----------
    allocation
        The planner's compute-optimal allocation at the budget.
    plan
        The two runs as a sweep plan (the planned run first, then the alternative).
    predictions
        One :class:`~scalinglab.report.values.TrainedRun` per run, ``measured`` unset.
    """

    allocation: Allocation
    plan: Plan
    predictions: tuple[TrainedRun, ...]

    @property
    def budget_flops(self) -> float:
        """The compute both runs train."""
        return float(self.allocation.budget_flops)


def _run_at(spec: SweepSpec, params: float, budget_flops: float) -> RunSpec:
    """The sweep's recipe at ``params`` (snapped to a real model) for ``budget_flops``."""
    from scalinglab.sweep.design import design_runs
    from scalinglab.sweep.spec_values import DesignSpec

    def design(tokens: float) -> RunSpec:
        grid = DesignSpec(kind="grid", params=(params,), tokens=(tokens,), min_steps=1)
        runs, _ = design_runs(dataclasses.replace(spec, design=grid))
        return runs[0]

    # Snap N first, then give the snapped model the budget's tokens: C = 6·N·D exactly, up to
    # whole optimiser steps.
    first = design(budget_flops / (6.0 * params))
    return design(budget_flops / (6.0 * first.params))


def plan_check(
    fit: Fit,
    spec: SweepSpec,
    budget_flops: float,
    *,
    workers: int | None = None,
    plan_options: Mapping[str, Any] | None = None,
    uncertainty: ProcedureFit | None = None,
) -> CheckPlan:
    """Plan ``budget_flops`` with ``fit``, and design the plan and the alternative to train.

    Parameters
    ----------
    fit
        The fit to plan with.
    spec
        The sweep's spec: the runs take its corpus, model family and training recipe.
    budget_flops
        Compute of each of the two runs.
    workers
        Workers the plan will be trained on.
    plan_options
        Cost options passed to :func:`scalinglab.plan.allocate` (``gpu``, ``mfu``).
    uncertainty
        ``fit`` with its predictive uncertainty (:func:`scalinglab.demo.predictive.
        predictive_fit`): the runs' intervals come from it. Without it there are none.

    Raises
    ------
    scalinglab.plan.PlanError
        The fit cannot be planned with.
    scalinglab.sweep.SpecError
        A planned size the model family cannot build.
    """
    from scalinglab.plan import allocate
    from scalinglab.sweep import Plan, check_coverage

    allocation = allocate(fit, budget_flops, level=PLAN_LEVEL, **dict(plan_options or {}))
    check_spec = dataclasses.replace(spec, name=f"{spec.name}-plan")
    planned = _run_at(check_spec, allocation.params, budget_flops)
    alt_params = math.sqrt(budget_flops / (6.0 * ALTERNATIVE_TOKENS_PER_PARAM))
    alternative = _run_at(check_spec, alt_params, budget_flops)
    runs = (planned, alternative)
    labels = ("plan", f"{ALTERNATIVE_TOKENS_PER_PARAM:g} tokens/param")
    predictions = []
    for label, run in zip(labels, runs, strict=True):
        interval = None
        if uncertainty is not None:
            # A predictive interval for one new run (parameters, run-to-run scatter and
            # extrapolation error; see scalinglab.demo.predictive), not the bootstrap's alone.
            lo, hi = uncertainty.interval(PLAN_LEVEL, params=run.params, tokens=run.tokens)
            interval = (float(lo), float(hi))
        predictions.append(
            TrainedRun(
                label=label,
                params=float(run.params),
                tokens=float(run.tokens),
                flops=float(run.flops),
                predicted=float(fit.predict(params=run.params, tokens=run.tokens)),
                interval=interval,
                level=PLAN_LEVEL if interval else None,
            )
        )
    plan = Plan(
        spec=check_spec,
        runs=runs,
        total_flops=sum(r.cost_flops for r in runs),
        workers=workers or spec.execution.workers,
        est_wall_s=None,
        throughput=None,
        trimmed=(),
        notes=(),
        coverage=check_coverage(runs),
    )
    return CheckPlan(allocation, plan, tuple(predictions))


def measured(check: CheckPlan, stored: pd.DataFrame) -> tuple[TrainedRun, ...]:
    """The predictions with the losses the store holds for their runs (``None`` if missing)."""
    finished = stored[stored["status"] == "finished"] if "status" in stored else stored
    losses = dict(zip(finished["key"], finished["loss"], strict=True))
    out = []
    for run, prediction in zip(check.plan.runs, check.predictions, strict=True):
        loss = losses.get(run.key)
        value = None if loss is None or not math.isfinite(float(loss)) else float(loss)
        out.append(dataclasses.replace(prediction, measured=value))
    return tuple(out)
