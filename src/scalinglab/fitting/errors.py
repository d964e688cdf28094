"""The fit engine's error and warning."""

from __future__ import annotations

from scalinglab.errors import ScalingLabError

__all__ = ["FitError", "FitWarning"]


class FitError(ScalingLabError):
    """A fit cannot be made: bad options, missing columns, too few runs.

    ``field`` names the option or column at fault (``"loss"``, ``"holdout_top"``, ``"weights"``).
    """


class FitWarning(UserWarning):
    """A fit was made but deserves caution (not converged, bound hit, not identifiable)."""
