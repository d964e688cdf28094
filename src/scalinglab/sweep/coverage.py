"""Coverage: whether a set of planned points can pin the N and D exponents of a law down.

Checked before anything is trained, so a sweep too thin to separate α from β is caught while it
is still free to change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scalinglab.sweep.runspec import RunSpec

__all__ = ["Coverage", "check_coverage"]

# Thresholds. Fewer than 3 sizes cannot locate a minimum along an IsoFLOP profile (a parabola
# needs 3 points), and Hoffmann et al. (2022) used 5 or more per level. The others are the
# judgement this module encodes: less than a decade of compute or of D/N leaves the fitted
# exponents resting on a short lever arm, and |corr(log N, log D)| above 0.95 makes the N and D
# terms of L(N, D) nearly collinear, so α and β trade off against each other.
MIN_SIZES_PER_LEVEL = 3
GOOD_SIZES_PER_LEVEL = 5
MIN_COMPUTE_DECADES = 1.0
MIN_RATIO_DECADES = 1.0
MAX_LOG_CORRELATION = 0.95
CHINCHILLA_PARAMETERS = 5  # E, A, B, α, β of L(N, D) = E + A/N^α + B/D^β


@dataclass(frozen=True)
class Coverage:
    """What a set of planned points can tell apart, checked before anything is trained.

    Attributes
    ----------
    points
        Points of the law (runs plus WSD cooldowns).
    compute_decades
        log10 of max/min compute over the points.
    sizes_per_level
        IsoFLOP only: distinct model sizes at each compute level.
    distinct_params, distinct_tokens
        Distinct N and D values.
    ratio_decades
        log10 of max/min tokens per parameter (D/N).
    log_correlation
        Pearson correlation of log N and log D over the points (``nan`` if undefined).
    warnings
        One line each, empty when the design is thick enough.
    """

    points: int
    compute_decades: float
    sizes_per_level: Mapping[float, int] | None
    distinct_params: int
    distinct_tokens: int
    ratio_decades: float
    log_correlation: float
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no warning was raised."""
        return not self.warnings


def check_coverage(runs: Sequence[RunSpec]) -> Coverage:
    """Check that ``runs`` can separate the N and D exponents; warn when they cannot.

    Parameters
    ----------
    runs
        Planned runs (WSD cooldowns count as points).

    Returns
    -------
    Coverage
    """
    n, dd, c = [], [], []
    for r in runs:
        n.append(r.params)
        dd.append(r.tokens)
        c.append(r.flops)
        for b in r.branches:
            n.append(r.params)
            dd.append(b.tokens)
            c.append(b.flops)
    warnings: list[str] = []
    if not n:
        return Coverage(0, 0.0, None, 0, 0, 0.0, float("nan"), ("no runs planned",))
    n_arr, d_arr, c_arr = (np.asarray(v, dtype=float) for v in (n, dd, c))
    compute_decades = float(np.log10(c_arr.max() / c_arr.min()))
    ratio = d_arr / n_arr
    ratio_decades = float(np.log10(ratio.max() / ratio.min()))
    ln, ld = np.log(n_arr), np.log(d_arr)
    corr = float(np.corrcoef(ln, ld)[0, 1]) if ln.std() > 0 and ld.std() > 0 else float("nan")
    distinct_n, distinct_d = len(set(n)), len(set(dd))

    levels: dict[float, int] | None = None
    if any(r.compute_level is not None for r in runs):
        levels = {}
        for r in runs:
            if r.compute_level is not None:
                levels[r.compute_level] = levels.get(r.compute_level, 0) + 1
        for level, count in sorted(levels.items()):
            if count < MIN_SIZES_PER_LEVEL:
                warnings.append(
                    f"level {level:.3g} FLOP has {count} size(s): at least {MIN_SIZES_PER_LEVEL} "
                    "are needed to locate its minimum"
                )
            elif count < GOOD_SIZES_PER_LEVEL:
                warnings.append(
                    f"level {level:.3g} FLOP has {count} sizes: {GOOD_SIZES_PER_LEVEL} or more "
                    "locate its minimum better"
                )
    if compute_decades < MIN_COMPUTE_DECADES:
        warnings.append(
            f"compute spans {compute_decades:.2f} decades (< {MIN_COMPUTE_DECADES:g}): exponents "
            "fitted on so short a range extrapolate poorly"
        )
    if distinct_n < 3 or distinct_d < 3:
        warnings.append(
            f"{distinct_n} distinct N and {distinct_d} distinct D: at least 3 of each are needed "
            "to fit separate N and D exponents"
        )
    if ratio_decades < MIN_RATIO_DECADES:
        warnings.append(
            f"D/N spans {ratio_decades:.2f} decades (< {MIN_RATIO_DECADES:g}): too narrow to "
            "separate the N and D exponents"
        )
    if math.isfinite(corr) and abs(corr) > MAX_LOG_CORRELATION:
        warnings.append(
            f"log N and log D are correlated at {corr:+.2f}: the N and D exponents will trade "
            "off against each other"
        )
    if len(n) < CHINCHILLA_PARAMETERS + 1:
        warnings.append(
            f"{len(n)} points for a law with {CHINCHILLA_PARAMETERS} parameters: no degrees of "
            "freedom left to judge the fit"
        )
    return Coverage(
        points=len(n),
        compute_decades=compute_decades,
        sizes_per_level=levels,
        distinct_params=distinct_n,
        distinct_tokens=distinct_d,
        ratio_decades=ratio_decades,
        log_correlation=corr,
        warnings=tuple(warnings),
    )
