"""Hugging Face ``Trainer`` output: ``trainer_state.json`` and its ``log_history``.

``log_history`` is a list of dicts, each with a ``step``: training logs (``loss``,
``learning_rate``, ``grad_norm``), evaluation logs (``eval_loss``, ``eval_accuracy``, ...) and a
final summary (``train_runtime``, ``train_loss`` averaged over all of training), which is not a
curve point and is left out. The run is named after its output folder (the folder holding
``trainer_state.json``, or the one above ``checkpoint-N/``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from scalinglab.importers.logs import LogImportError, Series, SourceLog, hash_files, source_log
from scalinglab.importers.metrics import imported_kind

__all__ = ["STATE_FILE", "find_trainer_state", "read_trainer_state"]

STATE_FILE = "trainer_state.json"
# Keys of the final summary entry, and bookkeeping keys: not metrics of a step.
_SUMMARY = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos"}
_NOT_METRICS = {"step", "epoch", "num_input_tokens_seen"}
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def find_trainer_state(path: Path) -> Path | None:
    """The ``trainer_state.json`` that ``path`` names or holds (the latest checkpoint's when
    the output folder has none of its own), or ``None``."""
    if path.is_file():
        return path if path.name == STATE_FILE else None
    if (path / STATE_FILE).is_file():
        return path / STATE_FILE
    checkpoints = [
        (int(m.group(1)), p)
        for p in path.iterdir()
        if p.is_dir() and (m := _CHECKPOINT.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return max(checkpoints)[1] / STATE_FILE if checkpoints else None


def read_trainer_state(path: Path, metric: str | None = None) -> SourceLog:
    """Read the curves of a Trainer run.

    Parameters
    ----------
    path
        ``trainer_state.json``, or the output folder (or a checkpoint folder) holding it.
    metric
        ``--metric``: a key it matches is read even when its name says no kind.

    Raises
    ------
    LogImportError
        No state file, an empty or malformed one, or an empty ``log_history``.
    """
    state_path = find_trainer_state(path)
    if state_path is None:
        raise LogImportError(f"{path}: no {STATE_FILE} in it or in a checkpoint-N folder")
    if state_path.stat().st_size == 0:
        raise LogImportError(f"{state_path}: an empty file, nothing to import")
    try:
        state = json.loads(state_path.read_text())
        history = state["log_history"]
        if not isinstance(history, list):
            raise TypeError("log_history is not a list")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise LogImportError(f"{state_path}: not a Trainer state file ({exc})") from None
    if not history:
        raise LogImportError(f"{state_path}: log_history is empty, nothing to import")
    folder = state_path.parent
    if _CHECKPOINT.match(folder.name):
        folder = folder.parent
    points: dict[str, tuple[list[int], list[float]]] = {}
    ignored: set[str] = set()
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or "step" not in entry:
            raise LogImportError(f"{state_path}: log_history[{i}] has no step")
        if _SUMMARY & entry.keys():
            continue
        for key, value in entry.items():
            if key in _NOT_METRICS or not isinstance(value, int | float):
                continue
            if not np.isfinite(value):  # a diverged step logs nan or inf: not a point
                continue
            if imported_kind(key, metric) is None:
                ignored.add(key)
                continue
            steps, values = points.setdefault(key, ([], []))
            steps.append(int(entry["step"]))
            values.append(float(value))
    series = tuple(
        Series(folder.name, key, np.array(s, dtype=np.int64), np.array(v, dtype=np.float64))
        for key, (s, v) in points.items()
    )
    return source_log(path, "hf-trainer", hash_files([state_path]), series, ignored)
