"""Fitting a scaling law to runs: robust objective, batched multi-start optimiser, the ``Fit``
value, bootstrap and holdout, verdicts.

Modules, by job: :mod:`~scalinglab.fitting.objective` (robust losses, :class:`Objective`),
:mod:`~scalinglab.fitting.optimiser` (batched Newton/Levenberg–Marquardt, :func:`minimize_batch`),
:mod:`~scalinglab.fitting.result` (:class:`Fit` and its JSON), :mod:`~scalinglab.fitting.display`
(the fit report), :mod:`~scalinglab.fitting.uncertainty` (bootstrap, holdout),
:mod:`~scalinglab.fitting.verdicts` (implausible exponents, identifiability) and
:mod:`~scalinglab.fitting.engine` (:func:`fit`).
"""

from scalinglab.fitting.engine import fit, refit
from scalinglab.fitting.errors import FitError, FitWarning
from scalinglab.fitting.objective import LOSSES, Objective, RobustLoss, make_objective
from scalinglab.fitting.optimiser import BatchResult, minimize_batch
from scalinglab.fitting.result import FIT_FORMAT, Domain, Fit, load_fit
from scalinglab.fitting.verdicts import PLAUSIBLE_EXPONENTS, implausible_exponents

__all__ = [
    "FIT_FORMAT",
    "LOSSES",
    "PLAUSIBLE_EXPONENTS",
    "BatchResult",
    "Domain",
    "Fit",
    "FitError",
    "FitWarning",
    "Objective",
    "RobustLoss",
    "fit",
    "implausible_exponents",
    "load_fit",
    "make_objective",
    "minimize_batch",
    "refit",
]
