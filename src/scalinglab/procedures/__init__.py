"""Named fitting procedures, their backtests, and fitting by one of them.

Modules, by job: :mod:`~scalinglab.procedures.registry` (:class:`Procedure`, :data:`PROCEDURES`,
:func:`get_procedure`), :mod:`~scalinglab.procedures.recipes` (trusted runs, weights,
:func:`fit_recipe`), :mod:`~scalinglab.procedures.inner` (the backtest inside the fitted runs),
:mod:`~scalinglab.procedures.curves` (which checkpoints of training curves a fit may use),
:mod:`~scalinglab.procedures.choice` (:func:`fit_procedure`, the nested choice),
:mod:`~scalinglab.procedures.prediction` (:class:`ProcedureFit`: predictions, intervals,
verdicts), :mod:`~scalinglab.procedures.allocation` (which fit splits a budget between N and D,
:class:`Planner`), :mod:`~scalinglab.procedures.rolling` (:func:`backtest`,
:class:`BacktestResult`) and :mod:`~scalinglab.procedures.allocation_backtest` (plans against
the optima measured beyond the cut).
"""

from scalinglab.procedures.allocation import (
    AllocationCheck,
    AllocationError,
    Planner,
    check_allocation,
    optimal_params,
    with_planner,
)
from scalinglab.procedures.choice import fit_procedure
from scalinglab.procedures.curves import SCHEDULES, curve_points
from scalinglab.procedures.errors import BacktestError, ProcedureError
from scalinglab.procedures.inner import INNER_CUTS, InnerBacktest, inner_backtest
from scalinglab.procedures.prediction import ProcedureFit, Verdict
from scalinglab.procedures.recipes import (
    fit_recipe,
    near_frontier_mask,
    run_weights,
    trust_mask,
    trusted_runs,
)
from scalinglab.procedures.registry import (
    DEFAULT_PROCEDURE,
    PROCEDURES,
    Procedure,
    get_procedure,
)
from scalinglab.procedures.rolling import BacktestResult, backtest

__all__ = [
    "DEFAULT_PROCEDURE",
    "INNER_CUTS",
    "PROCEDURES",
    "SCHEDULES",
    "AllocationCheck",
    "AllocationError",
    "BacktestError",
    "BacktestResult",
    "InnerBacktest",
    "Planner",
    "Procedure",
    "ProcedureError",
    "ProcedureFit",
    "Verdict",
    "backtest",
    "check_allocation",
    "curve_points",
    "fit_procedure",
    "fit_recipe",
    "get_procedure",
    "inner_backtest",
    "near_frontier_mask",
    "optimal_params",
    "run_weights",
    "trust_mask",
    "trusted_runs",
    "with_planner",
]
