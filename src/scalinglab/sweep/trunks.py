"""Finished WSD runs as starting points: the stable-phase checkpoint a sweep keeps of each, and
the runs it starts from them.

A WSD run of scalinglab's trainer writes its state where its cooldown starts
(:mod:`scalinglab.train.checkpoints`). When the run is recorded, the driver moves that file
into the store's checkpoint area (:func:`scalinglab.store.stable_dir`) and records it in the
same transaction (:func:`keep`), so a kill at any point leaves either the file recorded or the
run unfinished, to be recorded (not retrained: its own checkpoint holds the result) next time.
A later WSD run with the same stable phase whose cooldown starts at or after the checkpoint
starts from it (:func:`find_start`): the result is the one the run would reach from step 0
(bit for bit with the same thread count on CPU), for the compute of its steps after the
checkpoint only.

Disk: one file per finished WSD run, about 12 bytes per parameter (fp32 weights and AdamW's
two moments) plus the curve; the README gives the demo's figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scalinglab.store import KeptCheckpoint, Store, stable_dir
from scalinglab.sweep.command import is_command_config
from scalinglab.sweep.runspec import KEY_VERSION, RunSpec
from scalinglab.train.config import TrainConfig

__all__ = ["Start", "find_start", "keep", "stable_key", "start_limit", "trunk_of"]


@dataclass(frozen=True)
class Start:
    """A kept checkpoint a run can start from: its file, the run that kept it, its tokens."""

    path: str
    trunk_key: str
    tokens: int


def stable_key(config: Mapping[str, Any]) -> str | None:
    """sha256 of a run's stable phase (:meth:`TrainConfig.stable_phase`), or ``None`` for a run
    without one (cosine, or a command run: its trainer keeps no such state)."""
    if is_command_config(config) or config.get("schedule") != "wsd":
        return None
    phase = TrainConfig.from_dict(config).stable_phase()
    text = json.dumps({"v": KEY_VERSION, "stable": phase}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def start_limit(config: Mapping[str, Any]) -> int:
    """The latest tokens a checkpoint may be at to start this WSD run: its cooldown start, or
    its first branch point if earlier."""
    cfg = TrainConfig.from_dict(config)
    steps = [cfg.schedule_for_run().cooldown_start, *cfg.branch_steps()]
    return min(steps) * cfg.tokens_per_step


def find_start(kept: pd.DataFrame, run: RunSpec) -> Start | None:
    """The latest kept checkpoint (its file present) that can start ``run``, if any.

    Parameters
    ----------
    kept
        :meth:`Store.kept_checkpoints`.
    run
        A planned run.
    """
    config = run.config_dict
    key = stable_key(config)
    if key is None or kept.empty:
        return None
    rows = kept[
        (kept["stable_key"] == key)
        & kept["exists"].astype(bool)
        & (kept["tokens"] > 0)
        & (kept["tokens"] <= start_limit(config))
        & (kept["key"] != run.key)
    ]
    if rows.empty:
        return None
    best = rows.sort_values(["tokens", "key"]).iloc[-1]
    return Start(str(best["path"]), str(best["key"]), int(best["tokens"]))


def trunk_of(kept: pd.DataFrame, run: RunSpec, tokens: int) -> str | None:
    """The run whose kept checkpoint at ``tokens`` has ``run``'s stable phase (any of them, if
    several: their states are the same)."""
    key = stable_key(run.config_dict)
    rows = kept[(kept["stable_key"] == key) & (kept["tokens"] == tokens)] if key else kept[:0]
    return None if rows.empty else str(rows.sort_values("key")["key"].iloc[0])


def keep(store: Store, run: RunSpec, result: Mapping[str, Any]) -> KeptCheckpoint | None:
    """Move a finished run's stable-phase checkpoint into the store's area; say what to record.

    Idempotent: if a killed driver moved the file already, the file in the area is used.
    Returns ``None`` for a run that kept none (not WSD, trained without a checkpoint folder).
    """
    key = stable_key(run.config_dict)
    if key is None:
        return None
    dest = stable_dir(store.path) / f"{run.key[:16]}.pt"
    source = result.get("stable_checkpoint")
    if source and Path(source).is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, dest)
        except OSError:  # another filesystem: copy beside the target, then rename
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
            with contextlib.suppress(OSError):
                os.unlink(source)
    if not dest.is_file():
        return None
    cfg = TrainConfig.from_dict(run.config_dict)
    tokens = cfg.schedule_for_run().cooldown_start * cfg.tokens_per_step
    return KeptCheckpoint(key, dest.resolve(), tokens, dest.stat().st_size)
