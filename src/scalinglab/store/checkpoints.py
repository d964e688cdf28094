"""Stable-phase checkpoints the store keeps for its WSD runs, and the runs resumed from them.

A finished WSD run of scalinglab's trainer leaves one checkpoint: its state where its cooldown
starts (:mod:`scalinglab.train.checkpoints`). The sweep driver moves the file into the store's
checkpoint area (:func:`stable_dir`) and records it here in the same transaction as the run,
so a later, longer run of the same stable phase can start from it instead of from step 0.
Paths are kept relative to the store's folder, so a store moved with its area still finds
them; a file deleted by hand is reported as missing, never trusted.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = [
    "KeptCheckpoint",
    "insert_kept",
    "insert_resumed",
    "kept_checkpoints",
    "stable_dir",
]


@dataclass(frozen=True)
class KeptCheckpoint:
    """A stable-phase checkpoint to record with its run.

    Attributes
    ----------
    stable_key
        Hash of the run's stable phase: the runs it can start share it.
    path
        The file, in the store's checkpoint area.
    tokens
        Tokens trained at the checkpoint (where the run's cooldown starts).
    bytes
        Size of the file.
    """

    stable_key: str
    path: Path
    tokens: int
    bytes: int


def stable_dir(store_path: Path) -> Path:
    """The store's area for kept checkpoints: ``<store>.ckpt/stable`` beside the store (the
    sweep's own per-run checkpoints live in ``<store>.ckpt`` too and are removed once
    recorded; these stay)."""
    return store_path.with_name(store_path.name + ".ckpt") / "stable"


def insert_kept(
    cur: sqlite3.Cursor, key: str, kept: KeptCheckpoint, store_path: Path, now: float
) -> None:
    """Record run ``key``'s kept checkpoint (a second record of it replaces the first)."""
    rel = os.path.relpath(kept.path, store_path.resolve().parent)
    cur.execute(
        "INSERT INTO stable_checkpoints (key, stable_key, path, tokens, bytes, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
        "stable_key = excluded.stable_key, path = excluded.path, tokens = excluded.tokens, "
        "bytes = excluded.bytes",
        (key, kept.stable_key, rel, int(kept.tokens), int(kept.bytes), now),
    )


def insert_resumed(cur: sqlite3.Cursor, key: str, trunk_key: str, tokens: int) -> None:
    """Record that run ``key`` started from ``trunk_key``'s checkpoint at ``tokens`` tokens."""
    cur.execute(
        "INSERT INTO resumed_runs (key, trunk_key, tokens) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO NOTHING",
        (key, trunk_key, int(tokens)),
    )


def kept_checkpoints(conn: sqlite3.Connection, store_path: Path) -> pd.DataFrame:
    """Every kept checkpoint of a finished run: ``key``, ``stable_key``, ``path`` (absolute),
    ``tokens``, ``bytes``, ``exists`` (the file is there), and of the run that kept it
    ``params`` (as its sweep counts N), ``run_tokens`` and ``config_json``.

    An older store (schema < 3) has none: an empty frame.
    """
    columns = [
        *("key", "stable_key", "path", "tokens", "bytes", "exists"),
        *("params", "run_tokens", "config_json"),
    ]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "stable_checkpoints" not in tables:
        return pd.DataFrame(columns=columns)
    frame = pd.read_sql_query(
        "SELECT c.key, c.stable_key, c.path, c.tokens, c.bytes, "
        "CASE r.param_basis WHEN 'total' THEN r.params_total ELSE r.params_non_embedding END "
        "AS params, r.tokens AS run_tokens, r.config_json "
        "FROM stable_checkpoints c JOIN runs r ON r.key = c.key "
        "WHERE r.status = 'finished' ORDER BY c.tokens DESC, c.key",
        conn,
    )
    base = store_path.resolve().parent
    frame["path"] = [str(base / p) for p in frame["path"]]
    frame["exists"] = [Path(p).is_file() for p in frame["path"]]
    return frame[columns]
