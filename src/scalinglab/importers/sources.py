"""Which reader a source needs, from what it is (a folder's contents, a file's name or header)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from scalinglab.importers.hf_trainer import STATE_FILE, find_trainer_state, read_trainer_state
from scalinglab.importers.logs import LogImportError, SourceLog
from scalinglab.importers.mlflow import is_mlflow_folder, read_mlflow
from scalinglab.importers.tables import TABLE_SUFFIXES, read_table, table_columns
from scalinglab.importers.tensorboard import event_files, read_tensorboard
from scalinglab.importers.wandb import is_wandb_panel, read_wandb_panel

__all__ = ["read_source"]

_KNOWN = (
    "W&B panel or history CSV, a long table (.csv .tsv .parquet .jsonl), a TensorBoard folder, "
    "an MLflow mlruns/ folder, or a Trainer's trainer_state.json"
)


def _is_trainer_json(path: Path) -> bool:
    if path.name == STATE_FILE:
        return True
    try:
        with path.open() as handle:
            head = handle.read(1 << 16)
        return head.lstrip().startswith("{") and '"log_history"' in head
    except (OSError, UnicodeDecodeError):
        return False


def read_source(
    path: str | Path, *, metric: str | None = None, columns: Mapping[str, str] | None = None
) -> SourceLog:
    """Read one source with the reader its kind needs.

    Parameters
    ----------
    path
        A file or folder (see the module docstring of :mod:`scalinglab.importers`).
    metric
        ``--metric``, so a metric with an unrecognised name is still read when named.
    columns
        A long table's run/step/tokens column names.

    Raises
    ------
    LogImportError
        A missing path, an empty file, or nothing recognised.
    """
    path = Path(path)
    if not path.exists():
        raise LogImportError(f"{path}: no such file or folder", field="source")
    if path.is_dir():
        if find_trainer_state(path) is not None:
            return read_trainer_state(path, metric)
        if is_mlflow_folder(path):
            return read_mlflow(path, metric)
        if event_files(path):
            return read_tensorboard(path, metric)
        raise LogImportError(f"{path}: a folder with no logs recognised in it; expected {_KNOWN}")
    if path.stat().st_size == 0:
        raise LogImportError(f"{path}: an empty file, nothing to import")
    name = path.name
    suffix = path.suffix.lower()
    if name.startswith("events.out.tfevents."):
        return read_tensorboard(path, metric)
    if suffix == ".json":
        if _is_trainer_json(path):
            return read_trainer_state(path, metric)
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LogImportError(f"{path}: not valid JSON ({exc})") from None
        raise LogImportError(f"{path}: a JSON file but not a Trainer state; expected {_KNOWN}")
    if suffix in TABLE_SUFFIXES:
        if suffix == ".csv":
            names = table_columns(path)
            if is_wandb_panel(names):
                return read_wandb_panel(path, names)
        return read_table(path, columns=columns, metric=metric)
    raise LogImportError(f"{path}: unknown kind of file ({suffix or 'no suffix'}); {_KNOWN}")
