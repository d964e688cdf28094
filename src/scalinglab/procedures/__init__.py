"""Named fitting procedures, their backtests, and fitting by one of them.

Modules, by job: :mod:`~scalinglab.procedures.registry` (:class:`Procedure`, :data:`PROCEDURES`,
:func:`get_procedure`), :mod:`~scalinglab.procedures.recipes` (trusted runs, weights,
:func:`fit_recipe`), :mod:`~scalinglab.procedures.inner` (the backtest inside the fitted runs),
:mod:`~scalinglab.procedures.curves` (which checkpoints of training curves a fit may use),
:mod:`~scalinglab.procedures.choice` (:func:`fit_procedure`, :class:`ProcedureFit`, intervals,
verdicts) and :mod:`~scalinglab.procedures.rolling` (:func:`backtest`, :class:`BacktestResult`).
"""

from scalinglab.procedures.choice import ProcedureFit, Verdict, fit_procedure
from scalinglab.procedures.curves import SCHEDULES, curve_points
from scalinglab.procedures.errors import BacktestError, ProcedureError
from scalinglab.procedures.inner import INNER_CUTS, InnerBacktest, inner_backtest
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
    "BacktestError",
    "BacktestResult",
    "InnerBacktest",
    "Procedure",
    "ProcedureError",
    "ProcedureFit",
    "Verdict",
    "backtest",
    "curve_points",
    "fit_procedure",
    "fit_recipe",
    "get_procedure",
    "inner_backtest",
    "near_frontier_mask",
    "run_weights",
    "trust_mask",
    "trusted_runs",
]
