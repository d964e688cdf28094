"""Reading a runs source into a raw DataFrame: a table file by its suffix, a scalinglab store, a
DataFrame or :class:`Runs`."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from scalinglab.runs.table import Runs, RunsError
from scalinglab.store import STORE_SUFFIXES, StoreError, load_store_runs


def read_source(
    source: str | Path | pd.DataFrame, *, curves: bool = False, sweep: str | None = None
) -> tuple[pd.DataFrame, str]:
    """The raw table of ``source`` and its name; from a store, its finished points (of one
    ``sweep`` if given), or with ``curves`` every checkpoint of their training curves (a table
    is read as it is)."""
    if sweep is not None and not _is_store(source):
        raise RunsError(
            f"sweep {sweep!r}: only a scalinglab store (.db) holds sweeps, not "
            f"{source if isinstance(source, str | os.PathLike) else type(source).__name__}",
            field="sweep",
        )
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
    if suffix in STORE_SUFFIXES:
        if not path.exists():
            raise RunsError(f"{name}: no such store", field="source")
        return _read_store(path, curves, sweep), name
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


def _is_store(source: object) -> bool:
    return isinstance(source, str | os.PathLike) and Path(source).suffix.lower() in STORE_SUFFIXES


def _read_store(path: Path, curves: bool, sweep: str | None) -> pd.DataFrame:
    try:
        frame = load_store_runs(path, curves=curves, sweep=sweep)
    except StoreError as exc:
        message = str(exc)
        raise RunsError(
            message if str(path) in message else f"{path}: {message}",
            # An unknown sweep is the sweep option's fault, not the store's.
            field="sweep" if exc.field == "sweep" else "source",
        ) from exc
    return frame.reset_index(drop=True)
