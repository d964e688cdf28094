"""scalinglab: neural scaling laws as a working instrument.

Design a sweep, train real models, store every run, fit laws with honest uncertainty,
plan a training run for a budget, and report.

The names here are the few most work needs; everything else lives in a named subpackage:
:mod:`scalinglab.fitting` (objective, optimiser, bootstrap), :mod:`scalinglab.procedures`
(recipes and backtests), :mod:`scalinglab.plan`, :mod:`scalinglab.laws`, :mod:`scalinglab.units`
(hardware, cost), :mod:`scalinglab.counting` (parameters, FLOPs), :mod:`scalinglab.sweep`,
:mod:`scalinglab.train` (needs torch), :mod:`scalinglab.report`. Importing scalinglab imports
neither torch nor matplotlib.
"""

from scalinglab._version import __version__
from scalinglab.errors import ScalingLabError
from scalinglab.fitting import Fit, fit, load_fit
from scalinglab.laws import get_law
from scalinglab.plan import Allocation, Comparison, allocate, compare, frontier, least_compute
from scalinglab.procedures import BacktestResult, ProcedureFit, backtest, fit_procedure
from scalinglab.runs import Runs, load_runs

# The report draws with matplotlib (half a second to import), and the demo runs a sweep: both are
# loaded on first use, so that `import scalinglab` and every CLI command that draws nothing start
# without them.
_LAZY = {"build_report": "scalinglab.report", "run_demo": "scalinglab.demo"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalinglab' has no attribute {name!r}")


__all__ = [
    "Allocation",
    "BacktestResult",
    "Comparison",
    "Fit",
    "ProcedureFit",
    "Runs",
    "ScalingLabError",
    "__version__",
    "allocate",
    "backtest",
    "build_report",
    "compare",
    "fit",
    "fit_procedure",
    "frontier",
    "get_law",
    "least_compute",
    "load_fit",
    "load_runs",
    "run_demo",
]
