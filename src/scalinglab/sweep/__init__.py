"""Sweeps: design runs under a budget, store them durably, run them locally or on Ray.

``spec`` reads and validates the TOML spec; ``design`` turns it into runs (IsoFLOP, N × D grid,
WSD reuse), applies the budget and checks coverage; ``store`` keeps every run in one SQLite
file the fit engine reads directly; ``executors`` trains the runs that are missing.

Importing this package is cheap: torch is imported only when a run is designed or trained.
"""

from scalinglab.store import Store, StoreError, load_store_runs
from scalinglab.sweep.design import (
    BudgetError,
    Coverage,
    Plan,
    RunSpec,
    ThroughputModel,
    check_coverage,
    design_runs,
    plan_sweep,
)
from scalinglab.sweep.executors import RunEvent, SweepSummary, measure_throughput, run_sweep
from scalinglab.sweep.spec import SpecError, SweepSpec, load_spec, parse_spec

__all__ = [
    "BudgetError",
    "Coverage",
    "Plan",
    "RunEvent",
    "RunSpec",
    "SpecError",
    "Store",
    "StoreError",
    "SweepSpec",
    "SweepSummary",
    "ThroughputModel",
    "check_coverage",
    "design_runs",
    "load_spec",
    "load_store_runs",
    "measure_throughput",
    "parse_spec",
    "plan_sweep",
    "run_sweep",
]
