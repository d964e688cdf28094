"""Approaches 1 and 2 of Hoffmann et al. (2022): compute-optimal N and D without a loss law.

Approach 1, :func:`envelope`: for each compute C, the run reaching the lowest loss at C (from
training curves, or from final losses when each run has one row) gives N_opt(C); power laws
N_opt = k_N·C^a and D_opt = k_D·C^b are fitted to those points in log-log space.

Approach 2, :func:`isoflop`: runs at a fixed compute budget form an IsoFLOP profile; a parabola of
the loss in log N gives the profile's minimum N_opt(C), and power laws are fitted across
budgets. A budget whose lowest loss sits at the smallest or largest size tested has no minimum
inside its range; it is refused with a message naming the sizes to add, not fitted.

Both give percentile bootstrap CIs on a, b and the coefficients, by resampling runs.
"""

from scalinglab.approaches.lower_envelope import envelope
from scalinglab.approaches.powerlaw import PowerLawFit
from scalinglab.approaches.profiles import isoflop, isoflop_points
from scalinglab.approaches.result import ApproachError, ApproachResult

__all__ = [
    "ApproachError",
    "ApproachResult",
    "PowerLawFit",
    "envelope",
    "isoflop",
    "isoflop_points",
]
