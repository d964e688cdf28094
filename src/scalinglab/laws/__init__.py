"""Scaling-law forms: named parameters with bounds, predict, analytic gradient, start grids.

``get_law(name, **options)`` returns a law by its registry name:

- ``"chinchilla"``: L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022)
- ``"kaplan-nd"``: L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (Kaplan et al. 2020)
- ``"power"``: L(x) = E + A/x^α, ``x`` in params/tokens/flops, ``fix_E=True`` for E = 0
- ``"data-constrained"``: Chinchilla with repeated data (Muennighoff et al. 2023)
- ``"broken-power"``: L(x) = E + A x^-α (1 + (x/x_b)^(1/f))^(-Δf), one smooth break
  (Caballero et al. 2022)
"""

from __future__ import annotations

from typing import Any

from scalinglab.laws._base import INPUT_NAMES, BaseLaw, Law, LawError
from scalinglab.laws.broken import BrokenPowerLaw
from scalinglab.laws.chinchilla import ChinchillaLaw
from scalinglab.laws.data_constrained import DataConstrainedLaw
from scalinglab.laws.kaplan import KaplanNDLaw
from scalinglab.laws.power import X_CHOICES, PowerLaw

__all__ = [
    "INPUT_NAMES",
    "LAWS",
    "X_CHOICES",
    "BaseLaw",
    "BrokenPowerLaw",
    "ChinchillaLaw",
    "DataConstrainedLaw",
    "KaplanNDLaw",
    "Law",
    "LawError",
    "PowerLaw",
    "get_law",
]

LAWS: dict[str, type[BaseLaw]] = {
    ChinchillaLaw.name: ChinchillaLaw,
    KaplanNDLaw.name: KaplanNDLaw,
    PowerLaw.name: PowerLaw,
    DataConstrainedLaw.name: DataConstrainedLaw,
    BrokenPowerLaw.name: BrokenPowerLaw,
}


def get_law(name: str, **options: Any) -> BaseLaw:
    """Return the law registered as ``name``, built with ``options``.

    Parameters
    ----------
    name:
        One of ``LAWS``: ``"chinchilla"``, ``"kaplan-nd"``, ``"power"``, ``"data-constrained"``.
    **options:
        Options of the form, e.g. ``get_law("power", x="flops", fix_E=False)`` or
        ``get_law("data-constrained", excess_params=True)``.

    Raises
    ------
    LawError
        Unknown name or option.
    """
    if isinstance(name, BaseLaw):
        return name
    try:
        cls = LAWS[name]
    except KeyError:
        raise LawError(
            f"unknown law {name!r}; choose one of {', '.join(LAWS)}", field="law"
        ) from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise LawError(f"law {name!r}: {exc}", field="law_options") from None
