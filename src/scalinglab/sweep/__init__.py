"""Sweeps: design runs under a budget, store them durably, run them locally or on Ray.

``spec`` reads and validates the TOML spec; ``design`` turns it into planned runs
(``runspec``: IsoFLOP, N × D grid, WSD reuse); ``budget`` applies the budget, times and orders
them (``plan_sweep``); ``coverage`` checks they can pin a law down; ``probe`` times a few steps
for the wall-clock estimate; ``executors`` drives the training of the runs the store
(:mod:`scalinglab.store`) does not hold yet, on the ``backends`` (local processes or Ray).
``command`` opens sweeps to any trainer: a ``[train] command`` template per run, launched and
watched by ``command_runner`` (on driver threads locally, ``command_backend``, or on Ray), with
GPUs handed out by ``gpus``.

Importing this package, and designing a sweep, needs no torch: only training does.
"""

from scalinglab.store import Store, StoreError, load_store_runs
from scalinglab.sweep.budget import BudgetError, Plan, ThroughputModel, plan_sweep
from scalinglab.sweep.coverage import Coverage, check_coverage
from scalinglab.sweep.design import design_runs
from scalinglab.sweep.executors import RunEvent, SweepSummary, run_sweep
from scalinglab.sweep.probe import measure_throughput
from scalinglab.sweep.runspec import RunSpec
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
