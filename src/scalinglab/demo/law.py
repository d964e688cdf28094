"""Which law the demo fits and plans with: the full Chinchilla form if the data determine it.

The demo fits L(N, D) = E + A/N^α + B/D^β with a bootstrap and checks, before planning
anything, that the sweep has pinned the law down (:func:`identification_problems`):

- no parameter sits on a bound of the fit;
- E's interval stays clear of its lower bound: its lower end is above
  :data:`E_FLOOR_SHARE` of the smallest loss measured (E's bound is 10⁻¹², so an interval
  reaching below a per cent of any loss on record means the bootstrap refits ran into it);
- the intervals of α and β are each narrower than :data:`MAX_EXPONENT_WIDTH`.

If the check fails, the demo falls back to the simplest form the data can carry: the same law
with no floor (E = 0, so L = A/N^α + B/D^β, four parameters), which still sets the trade-off of
N against D at a budget, and says so; its own check (exponents only) is reported as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalinglab.fitting import Fit
    from scalinglab.runs import Runs

__all__ = [
    "E_FLOOR_SHARE",
    "MAX_EXPONENT_WIDTH",
    "LawChoice",
    "choose_law",
    "identification_problems",
]

# The test of an identified law: 95% intervals of α and β each narrower than 0.2.
MAX_EXPONENT_WIDTH = 0.2
# E's interval must start above this share of the smallest measured loss (see the module notes).
E_FLOOR_SHARE = 0.01
# The fallback pins E to its bound: (1e-12, 2e-12) is the narrowest range the fit accepts
# (low < high), and a floor of 10⁻¹² nats changes no prediction.
_NO_FLOOR = {"E": (1e-12, 2e-12)}


@dataclass(frozen=True)
class LawChoice:
    """The fit the demo plans with, and why that form.

    Attributes
    ----------
    fit
        The fit used for the plan and the report.
    identified
        True when the full Chinchilla form passed :func:`identification_problems`.
    problems
        Why the full form was not used (empty when it was).
    note
        One sentence for the report and the console.
    options
        Keyword arguments of :func:`scalinglab.fitting.fit` that made this form (the same fit on
        other runs, e.g. the held-out check, must use them too).
    """

    fit: Fit
    identified: bool
    problems: tuple[str, ...]
    note: str
    options: Mapping[str, Any] = field(default_factory=dict)


def identification_problems(fit: Fit, min_loss: float, *, floor: bool = True) -> list[str]:
    """Why ``fit`` does not pin the law down (empty when it does); see the module notes.

    Parameters
    ----------
    fit
        A Chinchilla-form fit with a bootstrap.
    min_loss
        The smallest loss among the fitted runs (sets E's threshold).
    floor
        Check E as well (``False`` for the no-floor fallback, whose E is fixed).
    """
    problems = [w for w in fit.warnings if "sits on its" in w and (floor or not w.startswith("E "))]
    ci = fit.ci or {}
    if not ci:
        return [*problems, "the fit has no bootstrap, so nothing says how well it is determined"]
    if floor and "E" in ci:
        lo, hi = ci["E"]
        if lo <= E_FLOOR_SHARE * min_loss:
            problems.append(
                f"E's {fit.ci_level:.0%} interval [{lo:.3g}, {hi:.3g}] reaches down to its bound "
                f"(below {E_FLOOR_SHARE:.0%} of the smallest loss, {min_loss:.3f})"
            )
    for name in ("alpha", "beta"):
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
    """Fit the Chinchilla law; if the data do not determine it, fit it without a floor.

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
    if not problems:
        return LawChoice(
            full,
            True,
            (),
            f"The sweep identifies the full law: E is off its bound and the {full.ci_level:.0%} "
            f"intervals of α and β are each narrower than {MAX_EXPONENT_WIDTH}.",
        )
    reduced = fit_law(
        "chinchilla", runs, bootstrap=bootstrap, seed=seed, progress=progress, bounds=_NO_FLOOR
    )
    still = identification_problems(reduced, min_loss, floor=False)
    note = (
        "The sweep does not identify the full law ("
        + "; ".join(problems)
        + "), so the demo fits and plans with the simplest form it does identify, the law "
        "without a floor, L = A/N^α + B/D^β (E fixed at 0)."
    )
    if still:
        note += " Even that form is weakly determined: " + "; ".join(still) + "."
    return LawChoice(reduced, False, tuple(problems), note, {"bounds": _NO_FLOOR})
