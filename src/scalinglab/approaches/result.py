"""What both approaches return (:class:`ApproachResult`), their error, and the choice of one group
of runs to apply them to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.approaches.powerlaw import PowerLawFit
from scalinglab.fitting import FitError
from scalinglab.runs import Runs, as_runs


class ApproachError(FitError):
    """An approach cannot be applied to these runs (too few budgets, edge minima, ...)."""


@dataclass(frozen=True)
class ApproachResult:
    """Compute-optimal allocation from Approach 1 (``"envelope"``) or 2 (``"isoflop"``).

    ``points`` has one row per optimum found: ``flops``, ``params_opt``, ``tokens_opt``,
    ``loss_opt`` (and, for IsoFLOP, ``n_runs`` and ``curvature`` of each parabola).
    """

    approach: str
    params_opt: PowerLawFit
    tokens_opt: PowerLawFit
    points: pd.DataFrame
    refused: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    bootstrap: int = 0
    ci_level: float = 0.95
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a."""
        return self.params_opt.exponent

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b."""
        return self.tokens_opt.exponent

    def allocate(self, flops: float | np.ndarray) -> tuple[Any, Any]:
        """(N_opt, D_opt) at ``flops`` from the fitted power laws."""
        return self.params_opt(flops), self.tokens_opt(flops)

    def to_dict(self) -> dict[str, Any]:
        return {
            "approach": self.approach,
            "a": self.a,
            "b": self.b,
            "params_opt": self.params_opt.to_dict(),
            "tokens_opt": self.tokens_opt.to_dict(),
            "points": self.points.to_dict(orient="records"),
            "refused": list(self.refused),
            "warnings": list(self.warnings),
            "bootstrap": self.bootstrap,
            "ci_level": self.ci_level,
            "details": dict(self.details),
        }


def select_group(runs: Runs | pd.DataFrame | str | Path, group: str | None) -> Runs:
    """The runs of ``group``; refused when the runs hold several groups and none is chosen."""
    table = as_runs(runs)
    if "group" in table.frame.columns:
        groups = pd.unique(table.frame["group"])
        if group is not None:
            if group not in set(groups):
                raise ApproachError(
                    f"group {group!r} is not in the runs; groups: {', '.join(map(str, groups[:8]))}"
                    + (" ..." if len(groups) > 8 else ""),
                    field="group",
                )
            table = table.subset(table.frame["group"] == group, f"group {group}")
        elif len(groups) > 1:
            raise ApproachError(
                f"the runs hold {len(groups)} groups (recipes or data sets), whose optima differ: "
                f"choose one with group=..., e.g. {groups[0]!r}",
                field="group",
            )
    elif group is not None:
        raise ApproachError(
            f"group={group!r} given, but the runs table has no 'group' column", field="group"
        )
    return table
