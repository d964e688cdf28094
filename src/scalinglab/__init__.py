"""scalinglab: neural scaling laws as a working instrument.

Design a sweep, train real models, store every run, fit laws with honest uncertainty,
plan a training run for a budget, and report.
"""

from scalinglab.backtest import BacktestResult, ProcedureFit, backtest, fit_procedure
from scalinglab.counting import (
    FlopsPerToken,
    ParamCount,
    TransformerShape,
    count_params,
    flops_per_token,
)
from scalinglab.fit import Fit, FitError, fit, load_fit
from scalinglab.laws import get_law
from scalinglab.plan import (
    Allocation,
    Comparison,
    PlanError,
    allocate,
    compare,
    frontier,
    least_compute,
)
from scalinglab.procedures import PROCEDURES, Procedure, get_procedure
from scalinglab.runs import Runs, RunsError, load_runs
from scalinglab.sweep import Store, load_spec, load_store_runs, plan_sweep, run_sweep
from scalinglab.units import (
    HARDWARE,
    ComputeCost,
    Hardware,
    compute_cost,
    flops_from_budget,
    flops_to_pf_days,
    get_hardware,
    pf_days_to_flops,
)

__version__ = "0.1.0"

# The report draws with matplotlib (half a second to import): loaded on first use, so that
# `import scalinglab` and every CLI command that draws nothing start without it.
_FROM_REPORT = ("DemoResult", "ReportResult", "build_report", "run_demo")


def __getattr__(name: str) -> object:
    if name in _FROM_REPORT:
        from scalinglab import report

        return getattr(report, name)
    raise AttributeError(f"module 'scalinglab' has no attribute {name!r}")


__all__ = [
    "HARDWARE",
    "PROCEDURES",
    "Allocation",
    "BacktestResult",
    "Comparison",
    "ComputeCost",
    "DemoResult",
    "Fit",
    "FitError",
    "FlopsPerToken",
    "Hardware",
    "ParamCount",
    "PlanError",
    "Procedure",
    "ProcedureFit",
    "ReportResult",
    "Runs",
    "RunsError",
    "Store",
    "TransformerShape",
    "__version__",
    "allocate",
    "backtest",
    "build_report",
    "compare",
    "compute_cost",
    "count_params",
    "fit",
    "fit_procedure",
    "flops_from_budget",
    "flops_per_token",
    "flops_to_pf_days",
    "frontier",
    "get_hardware",
    "get_law",
    "get_procedure",
    "least_compute",
    "load_fit",
    "load_runs",
    "load_spec",
    "load_store_runs",
    "pf_days_to_flops",
    "plan_sweep",
    "run_demo",
    "run_sweep",
]
