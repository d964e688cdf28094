"""The one error family of scalinglab.

Every error the package raises on purpose derives from :class:`ScalingLabError`, so a caller
(the CLI above all) catches one class, and reads :attr:`ScalingLabError.field` to learn which
column, option or key the error concerns instead of parsing the message.
"""

from __future__ import annotations

__all__ = ["ScalingLabError"]


class ScalingLabError(ValueError):
    """Bad input or an impossible request, with the field it concerns.

    It subclasses :class:`ValueError` because nearly every case is a value the caller passed
    (a column, an option, a key), and code written before the family existed caught that.

    Parameters
    ----------
    message
        One line naming the row, column, option or key at fault and what would be accepted.
    field
        The name of the column, option or key the error concerns (``"loss"``,
        ``"budget"``, ``"law"``), or ``None`` when it concerns no single one. The CLI maps
        it to its option (``budget`` -> ``--budget``).

    Attributes
    ----------
    field : str or None
        As given.

    Examples
    --------
    >>> error = ScalingLabError("budget must be positive, got -1", field="budget")
    >>> str(error), error.field
    ('budget must be positive, got -1', 'budget')
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
