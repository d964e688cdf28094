"""Tables of logged points: W&B run-history exports and plain long tables.

Both are one row per logged point. A W&B history export (``run.history()`` or the run page's
download) has a ``_step`` column and one column per metric, for one run; a long table adds a
run column, and may log tokens instead of steps. CSV/TSV, Parquet and JSON lines are read with
pyarrow, only the columns needed (the run, step and tokens columns and the metrics that are
losses, perplexities or accuracies), so memory follows the points imported, not the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from scalinglab.importers.logs import LogImportError, Series, SourceLog, hash_files, source_log
from scalinglab.importers.metrics import imported_kind

__all__ = ["TABLE_SUFFIXES", "read_arrow_table", "read_table", "table_columns"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")
RUN_COLUMNS = ("run", "run_name", "name", "run_id")
STEP_COLUMNS = ("_step", "step", "Step", "global_step", "trainer/global_step")
TOKEN_COLUMNS = ("tokens", "num_tokens", "tokens_seen")
# W&B's own bookkeeping columns: not metrics.
_SYSTEM_PREFIX = "_"


def _csv_options(path: Path) -> tuple:
    from pyarrow import csv

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return csv, csv.ParseOptions(delimiter=delimiter)


def table_columns(path: Path) -> list[str]:
    """The column names of a table file, reading only its header (or Parquet footer)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if suffix in (".jsonl", ".ndjson"):
            import pyarrow.json as pj

            # JSON lines have no header: the first block's keys are the columns.
            with pj.open_json(path) as reader:
                return list(reader.schema.names)
        csv, parse = _csv_options(path)
        with csv.open_csv(path, parse_options=parse) as reader:
            return list(reader.schema.names)
    except (pa.ArrowInvalid, OSError) as exc:
        if "Empty CSV file" in str(exc) or path.stat().st_size == 0:
            raise LogImportError(f"{path}: an empty file, nothing to import") from None
        raise LogImportError(f"{path}: not a readable table ({exc})") from None


def read_arrow_table(path: Path, columns: list[str], types: Mapping[str, pa.DataType]) -> pa.Table:
    """Read ``columns`` of a table file (multi-threaded; other columns are never parsed)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=columns)
        if suffix in (".jsonl", ".ndjson"):
            import pyarrow.json as pj

            return pj.read_json(path).select(columns)
        csv, parse = _csv_options(path)
        convert = csv.ConvertOptions(include_columns=columns, column_types=dict(types))
        return csv.read_csv(path, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LogImportError(f"{path}: cannot read columns {columns} ({exc})") from None


def _pick(names: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, path: Path):
    if wanted is not None:
        if wanted not in names:
            raise LogImportError(
                f"{path}: unknown {what} column {wanted!r}; columns: {', '.join(names[:12])}"
                f"{', ...' if len(names) > 12 else ''}",
                field=wanted,
            )
        return wanted
    return next((c for c in defaults if c in names), None)


def _numeric(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def read_table(
    path: Path,
    *,
    columns: Mapping[str, str] | None = None,
    metric: str | None = None,
) -> SourceLog:
    """Read a W&B history export or a long table.

    Parameters
    ----------
    path
        A ``.csv``, ``.tsv``, ``.parquet``/``.pq`` or ``.jsonl``/``.ndjson`` file.
    columns
        Which column holds the run, the step and the tokens (``{"run": ..., "step": ...,
        "tokens": ...}``); by default ``run``/``run_name``/``name``/``run_id``,
        ``_step``/``step``/``global_step`` and ``tokens``. Without a run column the whole file
        is one run named after the file.
    metric
        ``--metric``: a column it matches is read even when its name says no kind.

    Raises
    ------
    LogImportError
        Empty file, a named column that is not there, or neither a step nor a tokens column.
    """
    columns = dict(columns or {})
    names = table_columns(path)
    run_col = _pick(names, columns.get("run"), RUN_COLUMNS, "run", path)
    step_col = _pick(names, columns.get("step"), STEP_COLUMNS, "step", path)
    tokens_col = _pick(names, columns.get("tokens"), TOKEN_COLUMNS, "tokens", path)
    if step_col is None and tokens_col is None:
        raise LogImportError(
            f"{path}: no step column ({', '.join(STEP_COLUMNS)}) and no tokens column; "
            "name yours in META.toml [columns] step = '...'",
            field="step",
        )
    keys = {run_col, step_col, tokens_col} - {None}
    kinds: dict[str, str] = {}
    ignored: list[str] = []
    for name in names:
        if name in keys or name.startswith(_SYSTEM_PREFIX):
            continue
        kind = imported_kind(name, metric)
        if kind is not None:
            kinds[name] = kind
        else:
            ignored.append(name)
    wanted = [c for c in names if c in keys or c in kinds]
    types = {c: pa.float64() for c in kinds}
    if run_col is not None:
        types[run_col] = pa.string()
    table = read_arrow_table(path, wanted, types)
    if table.num_rows == 0:
        raise LogImportError(f"{path}: an empty file (a header and no rows), nothing to import")
    steps = _numeric(table[step_col]) if step_col else None
    tokens = _numeric(table[tokens_col]) if tokens_col else None
    if run_col is not None:
        encoded = table[run_col].combine_chunks().dictionary_encode()
        run_names = [str(v) for v in encoded.dictionary.to_pylist()]
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        if (codes < 0).any() or encoded.null_count:
            row = int(np.flatnonzero(encoded.is_null().to_numpy(zero_copy_only=False))[0])
            raise LogImportError(f"{path}: row {row + 2} has no run name ({run_col!r})")
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(run_names) + 1))
        groups = [(run_names[i], order[bounds[i] : bounds[i + 1]]) for i in range(len(run_names))]
    else:
        groups = [(path.stem, np.arange(table.num_rows))]
    series: list[Series] = []
    for name, metric_name in ((m, m) for m in kinds):
        values_all = _numeric(table[metric_name])
        for run, rows in groups:
            values = values_all[rows]
            keep = np.isfinite(values)
            x_steps = steps[rows] if steps is not None else None
            x_tokens = tokens[rows] if tokens is not None else None
            for x in (x_steps, x_tokens):
                if x is not None:
                    keep &= np.isfinite(x)
            if not keep.any():
                continue
            series.append(
                Series(
                    run=run,
                    metric=name,
                    steps=None if x_steps is None else x_steps[keep].astype(np.int64),
                    values=values[keep],
                    tokens=None if x_tokens is None else x_tokens[keep].astype(np.int64),
                )
            )
    return source_log(path, "table", hash_files([path]), series, ignored)
