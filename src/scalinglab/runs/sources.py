"""Reading a runs source into a raw DataFrame: a table file by its suffix, a scalinglab store, a
DataFrame or :class:`Runs`."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from scalinglab.runs.table import Runs, RunsError
from scalinglab.store import StoreError, load_store_runs


def read_source(
    source: str | Path | pd.DataFrame, *, curves: bool = False
) -> tuple[pd.DataFrame, str]:
    """The raw table of ``source`` and its name; from a store, its finished points, or with
    ``curves`` every checkpoint of their training curves (a table is read as it is)."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "<DataFrame>"
    if isinstance(source, Runs):
        return source.frame.copy(), source.source
    if not isinstance(source, str | os.PathLike):
        raise RunsError(
            "source must be a file path, a DataFrame or Runs, got "
            f"{type(source).__name__} {source!r:.40}",
            field="source",
        )
    path = Path(source)
    name = str(path)
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix in {".db", ".sqlite", ".sqlite3"}:
        if not path.exists():
            raise RunsError(f"{name}: no such store", field="source")
        return _read_store(path, curves), name
    if not path.exists():
        raise RunsError(f"{name}: no such file", field="source")
    try:
        if suffix in {".csv", ".txt"}:
            frame = pd.read_csv(path)
        elif suffix == ".tsv":
            frame = pd.read_csv(path, sep="\t")
        elif suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        elif suffix in {".jsonl", ".ndjson"}:
            frame = pd.read_json(path, lines=True)
        elif suffix == ".json":
            frame = pd.read_json(path, orient="records")
        else:
            raise RunsError(
                f"{name}: unknown file type {suffix or '(none)'!r}; use .csv, .tsv, .parquet, "
                ".jsonl, .json, or a .db/.sqlite store",
                field="source",
            )
    except RunsError:
        raise
    except Exception as exc:  # pandas raises many types; the user needs the file and the reason
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunsError(f"{name}: cannot read as {suffix[1:]}: {reason}", field="source") from exc
    return frame, name


def _read_store(path: Path, curves: bool) -> pd.DataFrame:
    try:
        frame = load_store_runs(path, curves=curves)
    except StoreError as exc:
        message = str(exc)
        raise RunsError(
            message if str(path) in message else f"{path}: {message}", field="source"
        ) from exc
    return frame.reset_index(drop=True)
