"""Verdicts on a fit: implausible exponents, parameters on a bound, a gradient that is not zero,
and near-equal optima that disagree (the fit is then not identifiable for the user's purpose).

:data:`PLAUSIBLE_EXPONENTS` is the one record of the exponents language-model fits have produced;
the procedures' bounds (their exponent priors) are taken from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from scalinglab.fitting.objective import Objective
from scalinglab.fitting.optimiser import Solved, distinct
from scalinglab.laws import BaseLaw

__all__ = [
    "PLAUSIBLE_EXPONENTS",
    "exponent_reasons",
    "implausible_exponents",
    "optima",
    "optimum_notes",
    "verdict",
]

# Relative gap in objective within which two optima count as "near-equal".
_OPTIMA_RTOL = 1e-3
# Near-equal optima whose exponents differ by more than this (relative) or whose predictions at the
# target differ by more than _PREDICTION_RTOL make the fit unidentifiable for the user's purpose.
_EXPONENT_RTOL = 0.02
_PREDICTION_RTOL = 0.005


# Exponents of language-model scaling laws on record lie well inside these ranges: Chinchilla's
# alpha = 0.34, beta = 0.28 (Hoffmann et al. 2022), Besiroglu et al.'s 0.35 and 0.37, Kaplan et
# al.'s alpha_N = 0.076, alpha_D = 0.095 (2020). Outside them, the fit describes the optimiser.
PLAUSIBLE_EXPONENTS: Mapping[str, Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "chinchilla": {"alpha": (0.05, 1.0), "beta": (0.05, 1.0)},
        "kaplan-nd": {"alpha_N": (0.01, 1.0), "alpha_D": (0.01, 1.0)},
        "power": {"alpha": (0.01, 1.0)},
        "data-constrained": {"alpha": (0.05, 1.0), "beta": (0.05, 1.0)},
    }
)


def implausible_exponents(law: str, params: Mapping[str, float]) -> list[str]:
    """One reason per exponent of ``params`` outside :data:`PLAUSIBLE_EXPONENTS`."""
    out = []
    for name, (lo, hi) in PLAUSIBLE_EXPONENTS.get(law, {}).items():
        v = params.get(name)
        if v is not None and math.isfinite(v) and not lo <= v <= hi:
            out.append(
                f"implausible exponent {name} = {v:.3g} (language-model fits on record lie in "
                f"[{lo:g}, {hi:g}])"
            )
    return out


def verdict(
    law: BaseLaw, params: Mapping[str, float], on_bound: np.ndarray, ident: Sequence[str]
) -> list[str]:
    """The reasons a fit is unreliable: implausible exponents, an exponent on a bound of the fit,
    and the identifiability notes ``ident``."""
    reasons = implausible_exponents(law.name, params)
    for i, name in enumerate(law.param_names):
        if on_bound[i] and name not in law.log_params:
            reasons.append(f"exponent {name} = {params[name]:.4g} sits on a bound of the fit")
    return reasons + list(ident)


def optima(
    law: BaseLaw, solved: Solved, target: Mapping[str, float] | None
) -> tuple[tuple[dict[str, float], ...], list[str]]:
    """The distinct finished solutions within 0.1% of the best objective (best first), and
    notes saying where they disagree: on exponents, or on the prediction at ``target``."""
    f_best = solved.objective
    near = solved.candidates_f <= f_best + _OPTIMA_RTOL * max(abs(f_best), 1e-300)
    # Only solutions the optimiser finished count: a start stopped because it ran into a better
    # one, or capped by max_iter, is on its way somewhere, not an optimum of its own.
    best = int(np.argmin(solved.candidates_f))
    finished = solved.candidates_converged.copy()
    finished[best] = True
    idx = np.flatnonzero(near & finished)
    keep = idx[distinct(solved.candidates_raw[idx], solved.candidates_f[idx], 10, tol=1e-2)]
    # The best solution first, then the others by objective.
    order = np.argsort(solved.candidates_f[keep], kind="stable")
    keep = keep[order]
    optima = []
    for i in keep:
        d = law.from_raw(solved.candidates_raw[i])
        d["objective"] = float(solved.candidates_f[i])
        optima.append(d)
    notes: list[str] = []
    if len(keep) < 2:
        return tuple(optima), notes
    natural = law.natural_array(solved.candidates_raw[keep])
    exps = [i for i, p in enumerate(law.param_names) if p not in law.log_params]
    spread = []
    for i in exps:
        v = natural[:, i]
        rel = (v.max() - v.min()) / max(abs(v[0]), 1e-12)
        if rel > _EXPONENT_RTOL:
            spread.append(f"{law.param_names[i]} from {v.min():.4g} to {v.max():.4g}")
    if spread:
        notes.append(
            f"not identifiable: {len(keep)} optima within {_OPTIMA_RTOL:.1%} of the best "
            f"objective disagree on exponents ({'; '.join(spread)})"
        )
    if target:
        preds = np.exp(
            law.log_predict_at(solved.candidates_raw[keep], target).reshape(len(keep), -1)
        )
        rel = (preds.max(axis=0) - preds.min(axis=0)) / preds[0]
        if np.max(rel) > _PREDICTION_RTOL:
            notes.append(
                f"not identifiable at the target: near-equal optima predict losses "
                f"{preds.min():.4g} to {preds.max():.4g} there ({np.max(rel):.1%} apart)"
            )
    return tuple(optima), notes


def exponent_reasons(law: str, params: Mapping[str, float], label: str) -> list[str]:
    """:func:`implausible_exponents`, plus exponents pinned on the edge of their plausible range
    (which the data pushed past it), each reason prefixed by ``label``."""
    reasons = [f"{label}: {r}" for r in implausible_exponents(law, params)]
    for name, (lo, hi) in PLAUSIBLE_EXPONENTS.get(law, {}).items():
        v = params.get(name)
        if v is None or not (lo <= v <= hi):
            continue
        if v <= lo * (1 + 1e-4) or v >= hi * (1 - 1e-4):
            reasons.append(
                f"{label}: exponent {name} = {v:.3g} is pinned on the edge of its plausible "
                f"range [{lo:g}, {hi:g}]"
            )
    return reasons


def optimum_notes(
    law: BaseLaw, objective: Objective, z: np.ndarray, raw_bounds: np.ndarray
) -> tuple[float, float, np.ndarray, list[str]]:
    """Checks at the optimum ``z``: its objective, the relative gradient (free parameters only),
    which parameters sit on a bound, and notes on both."""
    params = law.from_raw(z)
    f_best, g_best = objective.raw_value_and_grad(z)
    span = 1e-9 * (1.0 + np.abs(z))
    at_lo = z <= raw_bounds[:, 0] + span
    at_hi = z >= raw_bounds[:, 1] - span
    g_free = np.where((at_lo & (g_best > 0)) | (at_hi & (g_best < 0)), 0.0, g_best)
    # Gradient relative to the objective's size, per unit change of each raw parameter.
    grad_rel = float(np.max(np.abs(g_free)) / max(f_best, 1e-300))
    notes = []
    for i, name in enumerate(law.param_names):
        if at_lo[i] or at_hi[i]:
            side = "lower" if at_lo[i] else "upper"
            notes.append(
                f"{name} = {params[name]:.4g} sits on its {side} bound; the data do not "
                f"determine it within the bounds"
            )
    if grad_rel > 1e-4:
        notes.append(
            f"the optimiser may not have converged: relative gradient {grad_rel:.2g} at the best "
            "solution"
        )
    return float(f_best), grad_rel, at_lo | at_hi, notes
