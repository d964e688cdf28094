"""Which law the demo fits and plans with: the full Chinchilla form if the data determine it.

The demo fits L(N, D) = E + A/N^α + B/D^β with a bootstrap and checks, before planning
anything, that the sweep has pinned the law down (:func:`identification_problems`):

- no parameter sits on a bound of the fit;
- E's interval stays clear of its lower bound: its lower end is above
  :data:`E_FLOOR_SHARE` of the smallest loss measured (E's bound is 10⁻¹², so an interval
  reaching below a per cent of any loss on record means the bootstrap refits ran into it);
- the interval of each exponent is narrower than :data:`MAX_EXPONENT_WIDTH`;
- the law can split a budget between N and D (:func:`scalinglab.fitting.allocation.
  allocation_reasons`): plausible exponents off the edges of their range, and a 90% interval
  of the allocation exponent a (N_opt ∝ C^a) no wider than the gap between Kaplan et al.'s and
  Hoffmann et al.'s published a. A law that does not know a must not plan.

If the check fails, the demo falls back to the simplest form with fewer parameters that the
data do pin down, Kaplan et al.'s (2020, eq. 1.5) L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D:
four parameters and no irreducible floor, which still sets the trade-off of N against D at a
budget. It says so, and why. If neither form passes, it plans with the full form and says that
the data determine neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scalinglab.fitting import Fit
    from scalinglab.runs import Runs

__all__ = [
    "E_FLOOR_SHARE",
    "FALLBACK_LAW",
    "MAX_EXPONENT_WIDTH",
    "LawChoice",
    "choose_law",
    "identification_problems",
]

# The test of an identified law: 95% intervals of the exponents each narrower than 0.2.
MAX_EXPONENT_WIDTH = 0.2
# E's interval must start above this share of the smallest measured loss (see the module notes).
E_FLOOR_SHARE = 0.01
# The simpler form tried when the full one is not identified.
FALLBACK_LAW = "kaplan-nd"


@dataclass(frozen=True)
class LawChoice:
    """The fit the demo plans with, and why that form.

    Attributes
    ----------
    fit
        The fit used for the plan and the report.
    identified
        True when that fit passed :func:`identification_problems`.
    problems
        Why the full Chinchilla form was not used (empty when it was).
    note
        One or two sentences for the report and the console.
    """

    fit: Fit
    identified: bool
    problems: tuple[str, ...]
    note: str

    @property
    def exponents(self) -> tuple[str, ...]:
        """The fit's exponent names (``alpha``, ``beta`` or ``alpha_N``, ``alpha_D``)."""
        return _exponents(self.fit)


def _exponents(fit: Fit) -> tuple[str, ...]:
    return tuple(p for p in fit.law_object.param_names if p.startswith(("alpha", "beta")))


def identification_problems(fit: Fit, min_loss: float) -> list[str]:
    """Why ``fit`` does not pin its law down (empty when it does); see the module notes.

    Parameters
    ----------
    fit
        A fit with a bootstrap.
    min_loss
        The smallest loss among the fitted runs (sets E's threshold, for a law with E).
    """
    from scalinglab.fitting.allocation import allocation_reasons

    problems = [w for w in fit.warnings if "sits on its" in w]
    ci = fit.ci or {}
    if not ci:
        return [*problems, "the fit has no bootstrap, so nothing says how well it is determined"]
    problems += [r for r in allocation_reasons(fit) if r not in problems]
    if "E" in ci:
        lo, hi = ci["E"]
        if lo <= E_FLOOR_SHARE * min_loss:
            problems.append(
                f"E's {fit.ci_level:.0%} interval [{lo:.3g}, {hi:.3g}] reaches down to its bound "
                f"(below {E_FLOOR_SHARE:.0%} of the smallest loss, {min_loss:.3f})"
            )
    for name in _exponents(fit):
        if name in ci:
            lo, hi = ci[name]
            if not hi - lo < MAX_EXPONENT_WIDTH:
                problems.append(
                    f"{name}'s {fit.ci_level:.0%} interval [{lo:.3f}, {hi:.3f}] is "
                    f"{hi - lo:.3f} wide (≥ {MAX_EXPONENT_WIDTH})"
                )
    return problems


def choose_law(
    runs: Runs,
    *,
    bootstrap: int,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> LawChoice:
    """Fit the Chinchilla law; if the data do not determine it, the simpler Kaplan form.

    Parameters
    ----------
    runs
        The sweep's points.
    bootstrap, seed
        Bootstrap resamples (whole runs: a WSD cooldown moves with its trunk) and their seed.
    progress
        Receives ``progress(stage, done, total)`` during each bootstrap.
    """
    from scalinglab.fitting import fit as fit_law

    min_loss = float(runs.frame["loss"].min())
    full = fit_law("chinchilla", runs, bootstrap=bootstrap, seed=seed, progress=progress)
    problems = identification_problems(full, min_loss)
    level = f"{full.ci_level:.0%}"
    if not problems:
        return LawChoice(
            full,
            True,
            (),
            f"The sweep identifies the full law: E is off its bound and the {level} intervals "
            f"of α and β are each narrower than {MAX_EXPONENT_WIDTH}.",
        )
    simple = fit_law(FALLBACK_LAW, runs, bootstrap=bootstrap, seed=seed, progress=progress)
    why = "; ".join(problems)
    still = identification_problems(simple, min_loss)
    if not still:
        return LawChoice(
            simple,
            True,
            tuple(problems),
            f"The sweep does not identify the full law E + A/N^α + B/D^β ({why}), so the demo "
            "fits and plans with the simplest form it does identify: Kaplan et al.'s "
            f"{simple.law_object.formula}, four parameters and no floor (the {level} intervals "
            f"of α_N and α_D are each narrower than {MAX_EXPONENT_WIDTH}).",
        )
    return LawChoice(
        full,
        False,
        tuple(problems),
        f"The sweep identifies neither the full law ({why}) nor Kaplan et al.'s simpler form "
        f"({'; '.join(still)}): the plan below rests on a law the data do not determine.",
    )
