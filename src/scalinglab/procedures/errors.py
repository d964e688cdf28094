"""Errors of the procedures and their backtests."""

from __future__ import annotations

from scalinglab.errors import ScalingLabError

__all__ = ["BacktestError", "ProcedureError"]


class ProcedureError(ScalingLabError):
    """Unknown procedure name or inconsistent recipe (``field``: the recipe field at fault)."""


class BacktestError(ScalingLabError):
    """A backtest cannot be run: no cut leaves runs on both sides, unknown group column, ...

    ``field`` names the option at fault (``"cuts"``, ``"group_by"``, ``"level"``, ...).
    """
