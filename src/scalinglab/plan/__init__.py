"""Planning with a fitted law: how to spend a budget, and what an improvement is worth in compute.

A scaling law is fitted to decide how to spend a finite budget. This package turns a
:class:`~scalinglab.fitting.Fit` into decisions:

- :func:`allocate`: the compute-optimal parameters N and tokens D for a FLOP budget, the loss
  they reach (with an interval when the fit carries a bootstrap) and the budget in every unit
  (PF-days, accelerator-hours, days, energy, money), under optional limits: a parameter cap
  (memory or serving), a cap on unique tokens (repetition modelled only by a data-constrained
  fit) and an expected number of inference tokens (Sardana & Frankle 2023);
- :func:`least_compute`: the least training compute that reaches a target loss, or a clear
  "unreachable";
- :func:`frontier`: :func:`allocate` over a range of budgets, as a table;
- :func:`compare`: the compute-equivalent multiplier k(C) of recipe B over recipe A, i.e. B
  reaches at C/k the loss that A reaches at C (with a paired-bootstrap interval).

Every plan says when its N, D or D/N lie outside the range of the runs the fit was made on.

Least compute for a target loss ℓ is solved as its own problem, min over N of
FLOPs(N)·D_ℓ(N) where D_ℓ(N) is the D at which L(N, D) = ℓ; the inference-aware optimum is the
same problem with FLOPs(N)·D_ℓ(N) + FLOPs_inference(N)·T (Sardana & Frankle 2023, §2).

Modules, by job: :mod:`~scalinglab.plan.results` (:class:`Allocation`, :class:`Comparison`,
:class:`PlanError`), :mod:`~scalinglab.plan.surface` (a fit's loss surfaces),
:mod:`~scalinglab.plan.limits` (options, caps, counted FLOPs), :mod:`~scalinglab.plan.solvers`
(grid argmin, root finding, Chinchilla's closed form), :mod:`~scalinglab.plan.assemble` (loss
interval, cost and caveats of a solution), and the entry points in
:mod:`~scalinglab.plan.allocation` and :mod:`~scalinglab.plan.comparison`.
"""

from scalinglab.plan.allocation import allocate, frontier, least_compute
from scalinglab.plan.comparison import compare
from scalinglab.plan.results import Allocation, Comparison, PlanError

__all__ = [
    "Allocation",
    "Comparison",
    "PlanError",
    "allocate",
    "compare",
    "frontier",
    "least_compute",
]
