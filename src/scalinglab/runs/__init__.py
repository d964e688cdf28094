"""The runs table: one validated, typed table of training runs, whatever their source.

Users bring runs from their own infrastructure (CSV, Parquet, JSONL exports, a pandas DataFrame)
or from a scalinglab sweep store (SQLite). :func:`load_runs` maps their column names onto the
canonical schema, derives the missing one of N, D, C from C = 6·N·D, and refuses bad values with
an error that names the row and the column. Everything downstream (fitting, planning, reports)
reads only the canonical columns.

Canonical columns
-----------------
``params`` (N, parameters), ``tokens`` (D, training tokens), ``flops`` (C, training FLOP),
``loss`` (loss in nats); optional ``group`` (recipe or data set, str), ``step`` (int),
``unique_tokens`` (float, for data-constrained laws) and ``run_id`` (str: rows that share a
``run_id`` are checkpoints of one training run and are resampled together by the bootstrap).

Rows are numbered from 1 in source order, header excluded, in every message.
"""

from scalinglab.runs.columns import ALIASES
from scalinglab.runs.loading import as_runs, load_runs
from scalinglab.runs.table import (
    CANONICAL_COLUMNS,
    NUMERIC_COLUMNS,
    OPTIONAL_COLUMNS,
    PARAM_BASES,
    Runs,
    RunsError,
    RunsWarning,
)

__all__ = [
    "ALIASES",
    "CANONICAL_COLUMNS",
    "NUMERIC_COLUMNS",
    "OPTIONAL_COLUMNS",
    "PARAM_BASES",
    "Runs",
    "RunsError",
    "RunsWarning",
    "as_runs",
    "load_runs",
]
