"""How sure a fit is of the split between N and D: the allocation exponent a and its interval.

A law in N and D plans N_opt ∝ C^a; for the Chinchilla form a = β/(α+β) (Hoffmann et al. 2022,
eq. 4), for Kaplan et al.'s joint form a = α_D/(α_N+α_D). The loss along the compute-optimal
frontier depends on the exponents only through αβ/(α+β), so a fit can predict loss well and
still not know a: its bootstrap interval of a then says so. Planning code (``plan``) and the
procedures' choice of the fit that plans (``procedures.allocation``) share the test here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np

from scalinglab.fitting.result import Fit
from scalinglab.fitting.verdicts import exponent_reasons

__all__ = [
    "A_LEVEL",
    "MAX_A_WIDTH",
    "allocation_exponent",
    "allocation_reasons",
    "planning_fit",
]

# Level of the interval of a that identification is judged on.
A_LEVEL = 0.9
# A fit whose 90% interval of a is wider than this cannot tell apart the two best-known published
# allocations, Kaplan et al. (2020: N_opt ∝ C^0.73) and Hoffmann et al. (2022: C^0.50), 0.23
# apart: its plan is not evidence for either. Chosen from those two published values, not from
# any data set's results.
MAX_A_WIDTH = 0.23


def allocation_exponent(
    fit: Fit, level: float = A_LEVEL
) -> tuple[float, tuple[float, float] | None]:
    """a of ``fit`` (N_opt ∝ C^a) and its percentile bootstrap interval at ``level``.

    Returns ``(nan, None)`` for a law that gives no a (one of compute alone); the interval is
    ``None`` without bootstrap resamples.
    """
    law = fit.law_object
    a = law.derived(fit.params).get("a", math.nan)
    if fit.bootstrap_params is None or len(fit.bootstrap_params) < 2 or not math.isfinite(a):
        return float(a), None
    draws = law.derived_array(np.asarray(fit.bootstrap_params, dtype=float)).get("a")
    if draws is None:
        return float(a), None
    draws = draws[np.isfinite(draws)]
    if draws.size < 2:
        return float(a), None
    lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return float(a), (float(lo), float(hi))


def allocation_reasons(
    fit: Fit, level: float = A_LEVEL, max_width: float = MAX_A_WIDTH
) -> list[str]:
    """Why ``fit`` cannot be trusted to split a budget between N and D (empty: it can).

    A law without both N and D, an implausible exponent, an exponent on a bound of the fit or on
    the edge of its plausible range, or a ``level`` interval of a wider than ``max_width``.
    Without bootstrap resamples the width cannot be judged; that is not a reason by itself.
    """
    law = fit.law_object
    if not {"params", "tokens"} <= set(law.inputs):
        return [
            f"law {fit.law} depends on {', '.join(law.inputs)} only: it cannot split a budget "
            "between N and D"
        ]
    label = str(fit.diagnostics.get("procedure", fit.law))
    reasons = exponent_reasons(fit.law, fit.params, label)
    reasons += [f"{label}: {r}" for r in fit.reasons if "sits on a bound" in r]
    a, interval = allocation_exponent(fit, level)
    if not math.isfinite(a):
        reasons.append(f"{label}: no allocation exponent a")
    elif interval is not None and interval[1] - interval[0] > max_width:
        reasons.append(
            f"{label}: the {level:.0%} interval of a = {a:.2f} is [{interval[0]:.2f}, "
            f"{interval[1]:.2f}], wider than {max_width:g} (the gap between Kaplan et al.'s and "
            "Hoffmann et al.'s published a): the runs do not tell N from D"
        )
    return reasons


def planning_fit(fit: Fit) -> tuple[Fit | None, str | None]:
    """The fit that should split budgets for ``fit``, and a note saying why (None: itself).

    A fit made by a procedure carries its planner in ``diagnostics["allocation"]``
    (:class:`~scalinglab.procedures.allocation.Planner`): the member or candidate that tells N
    from D. Returns ``(None, why)`` when no fit of the procedure does; planning then refuses.
    """
    info = fit.diagnostics.get("allocation")
    if not isinstance(info, Mapping):
        return fit, None
    why = str(info.get("why") or "")
    if not info.get("planner"):
        return None, why
    planner = info.get("planner_fit")
    if not planner:
        return fit, None
    return Fit.from_json(json.dumps(planner)), f"the split of N and D is {info['planner']}'s: {why}"
