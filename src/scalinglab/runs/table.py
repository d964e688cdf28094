"""The :class:`Runs` value: a validated table of training runs, its canonical columns and errors.

How a raw table becomes one is :mod:`scalinglab.runs.loading`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalinglab.errors import ScalingLabError

NUMERIC_COLUMNS = ("params", "tokens", "flops", "loss")
OPTIONAL_COLUMNS = ("group", "step", "unique_tokens", "run_id")
CANONICAL_COLUMNS = NUMERIC_COLUMNS + OPTIONAL_COLUMNS
PARAM_BASES = ("total", "non_embedding", "unknown")


class RunsError(ScalingLabError):
    """A runs table cannot be used; the message names the row and the column at fault.

    ``field`` is the canonical column at fault (``"loss"``, ``"params"``, ...), or the argument
    of :func:`load_runs` (``"source"``, ``"columns"``, ``"param_basis"``, ``"drop_top_loss"``).
    """


class RunsWarning(UserWarning):
    """Something in a runs table is suspicious but usable (duplicates, C far from 6·N·D)."""


@dataclass(frozen=True)
class Runs:
    """A validated table of training runs.

    Attributes
    ----------
    frame:
        Columns ``params``, ``tokens``, ``flops``, ``loss`` (float64, finite, > 0), then whichever
        of ``group`` (str), ``step`` (int64), ``unique_tokens`` (float64 > 0), ``run_id`` (str)
        the source had, then the source's other columns unchanged. Index 0..n-1 in source order.
    param_basis:
        What N counts: ``"total"``, ``"non_embedding"`` or ``"unknown"``. The two counts differ
        most at small scale, the main cause of the Kaplan/Chinchilla gap (Pearce & Song 2024).
    source:
        The path read, or ``"<DataFrame>"``.
    notes:
        What loading did to the data (column mapping, derived columns, dropped rows).
    """

    frame: pd.DataFrame
    param_basis: str
    source: str
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.frame)

    def _repr_html_(self) -> str:
        """The table for notebooks: a heading (runs, source, N basis, ranges) over the first
        and last rows of the canonical columns, then the loading notes."""
        columns = [c for c in CANONICAL_COLUMNS if c in self.frame]
        ranges = ", ".join(
            f"{name} {self.frame[name].min():.3g}–{self.frame[name].max():.3g}"
            for name in ("params", "tokens", "flops", "loss")
        )
        heading = (
            f"<strong>{len(self)} runs</strong> from {html.escape(self.source)} "
            f"(N counts {html.escape(self.param_basis)} parameters; {ranges})"
        )
        table = self.frame[columns].to_html(max_rows=10, float_format="{:.4g}".format, border=0)
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        return f"<div>{heading}{table}" + (f"<ul>{notes}</ul>" if notes else "") + "</div>"

    def column(self, name: str) -> np.ndarray:
        """Return canonical column ``name`` as a read-only numpy array."""
        values = self.frame[name].to_numpy()
        values = values.copy()
        values.setflags(write=False)
        return values

    def subset(self, mask: np.ndarray | pd.Series, note: str | None = None) -> Runs:
        """Return the runs where ``mask`` is true, re-indexed, with an optional extra note."""
        frame = self.frame.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        notes = (*self.notes, note) if note else self.notes
        return Runs(frame=frame, param_basis=self.param_basis, source=self.source, notes=notes)

    def cluster_ids(self, by: str = "run") -> np.ndarray:
        """Integer cluster of every row for resampling: whole runs (``run_id``) or whole groups.

        Rows without a ``run_id`` column are each their own run.
        """
        if by == "run":
            if "run_id" not in self.frame:
                return np.arange(len(self.frame))
            return pd.factorize(self.frame["run_id"])[0]
        if by == "group":
            if "group" not in self.frame:
                raise RunsError(
                    "cannot resample by group: the runs table has no 'group' column", field="group"
                )
            return pd.factorize(self.frame["group"])[0]
        raise RunsError(f"cluster 'by' must be 'run' or 'group', got {by!r}", field="by")
