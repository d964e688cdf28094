"""W&B panel exports: the CSV that "Export panel data -> CSV" writes for a line plot.

Layout (as W&B writes it): the x axis (``Step``, or a token count when the panel is plotted
against one), then per run or group three columns
``"<run> - <metric>"``, ``"<run> - <metric>__MIN"`` and ``"<run> - <metric>__MAX"``; a cell is
empty where that run logged nothing at that step. ``__MIN``/``__MAX`` bound the points W&B
averaged into one when it sampled the plot: the value column is what is imported, and a note
says when the bounds differ (the panel was sampled, so the export is not every logged point).
A group (``Group: OLMo-1B``) is imported under its group name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from scalinglab.importers.logs import LogImportError, Series, SourceLog, hash_files, source_log
from scalinglab.importers.tables import read_arrow_table, table_columns

__all__ = ["is_wandb_panel", "read_wandb_panel"]

_SEP = " - "
_GROUP = "Group: "
_BOUNDS = ("__MIN", "__MAX")


def is_wandb_panel(names: list[str]) -> bool:
    """A header W&B's panel export writes: the x axis (``Step``, or the panel's own x such as a
    token count) then only ``"<run> - <metric>"`` columns."""
    return len(names) > 1 and all(_SEP in n for n in names[1:])


def read_wandb_panel(path: Path, names: list[str] | None = None) -> SourceLog:
    """Read a W&B panel CSV export.

    Parameters
    ----------
    path
        The CSV file.
    names
        Its header, if already read.

    Raises
    ------
    LogImportError
        An x axis that is neither ``Step`` nor a token count, or no rows.
    """
    names = names if names is not None else table_columns(path)
    values_cols = [n for n in names[1:] if not n.endswith(_BOUNDS)]
    for name in values_cols:
        if _SEP not in name:
            raise LogImportError(
                f"{path}: column {name!r} is not W&B's '<run> - <metric>'", field=name
            )
    table = read_arrow_table(path, names, {n: pa.float64() for n in names})
    if table.num_rows == 0:
        raise LogImportError(f"{path}: an empty file (a header and no rows), nothing to import")
    x_name = names[0]
    if x_name != "Step" and "token" not in x_name.lower():
        raise LogImportError(
            f"{path}: the panel's x axis is {x_name!r}, neither Step nor a token count; "
            "export the panel against Step",
            field=x_name,
        )
    x = np.asarray(table[x_name].to_numpy(zero_copy_only=False), dtype=np.float64)
    series: list[Series] = []
    notes: list[str] = []
    groups: list[str] = []
    sampled = 0
    for name in values_cols:
        run, _, metric = name.rpartition(_SEP)
        if run.startswith(_GROUP):
            run = run[len(_GROUP) :]
            groups.append(run)
        values = np.asarray(table[name].to_numpy(zero_copy_only=False), dtype=np.float64)
        keep = np.isfinite(values) & np.isfinite(x)
        if not keep.any():
            continue
        if all(name + b in table.column_names for b in _BOUNDS):
            lo = np.asarray(table[name + "__MIN"].to_numpy(zero_copy_only=False), dtype=float)
            hi = np.asarray(table[name + "__MAX"].to_numpy(zero_copy_only=False), dtype=float)
            sampled += int(np.count_nonzero((hi[keep] - lo[keep]) > 0))
        logged = x[keep].astype(np.int64)
        if x_name == "Step":
            series.append(Series(run, metric, logged, values[keep]))
        else:  # the panel was plotted against tokens: no tokens per step needed
            series.append(Series(run, metric, None, values[keep], tokens=logged))
    if not series:
        raise LogImportError(f"{path}: no values in any column, nothing to import")
    if groups:
        notes.append(
            f"{', '.join(sorted(set(groups)))}: a W&B group, imported under its name (W&B plots "
            "the mean over the group's runs)"
        )
    if sampled:
        notes.append(
            f"{path.name}: {sampled} points are W&B bin averages (their __MIN and __MAX differ):"
            " the panel was sampled, so this export is not every logged point"
        )
    return source_log(path, "wandb-panel", hash_files([path]), series, notes=notes)
