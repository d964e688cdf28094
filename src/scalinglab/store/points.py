"""The store's finished points as the fit engine reads them: one row per run or WSD cooldown
(:func:`finished_points`), or one per checkpoint of their training curves (:func:`finished_curves`).

N is taken as each sweep declares it (total or non-embedding) and C by its counting method
(C = 6ND, or per operation); cooldowns carry their parent's ``run_id`` so the bootstrap
resamples a trunk and its branches together.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.store.schema import StoreError

__all__ = ["finished_curves", "finished_points"]


def finished_points(conn: sqlite3.Connection, path: Path, sweep: str | None) -> pd.DataFrame:
    """Finished points of ``sweep`` (of every sweep when ``None``) read through ``conn``.

    Raises
    ------
    StoreError
        Sweeps that count N differently, read together.
    """
    query = (
        "SELECT r.key, r.kind, r.parent_key, r.branch_tokens, r.params_total, "
        "r.params_non_embedding, r.tokens, r.flops_per_operation, r.flops_6nd, "
        "r.flops_counted, r.loss, r.seed, r.compute_level, r.schedule, "
        "sr.sweep AS sweep, s.param_basis AS basis, s.flops_method AS method "
        "FROM runs r JOIN sweep_runs sr ON sr.key = r.key JOIN sweeps s ON s.name = sr.sweep "
        "WHERE r.status = 'finished'"
    )
    args: list[Any] = []
    if sweep is not None:
        query += " AND sr.sweep = ?"
        args.append(sweep)
    query += " ORDER BY sr.sweep, sr.position"
    raw = pd.read_sql_query(query, conn, params=args)
    # A run several sweeps share appears once: under the first sweep (by name) to plan it.
    raw = raw.sort_values(["sweep"], kind="stable").drop_duplicates("key", keep="first")
    bases = sorted(set(raw["basis"]))
    if len(bases) > 1:
        raise StoreError(
            f"{path}: sweeps count N differently ({', '.join(bases)}); "
            "read one sweep at a time (sweep=...)",
            field="sweep",
        )
    if sweep is not None and not bases:
        basis_row = conn.execute(
            "SELECT param_basis FROM sweeps WHERE name = ?", (sweep,)
        ).fetchone()
        bases = [basis_row[0]]
    params = raw["params_non_embedding"].where(raw["basis"] == "non_embedding", raw["params_total"])
    flops = (FLOPS_PER_PARAM_TOKEN * params * raw["tokens"]).where(
        raw["method"] == "6nd", raw["flops_per_operation"]
    )
    frame = pd.DataFrame(
        {
            "params": params.astype("float64"),
            "tokens": raw["tokens"].astype("float64"),
            "flops": flops.astype("float64"),
            "loss": raw["loss"].astype("float64"),
            # Cooldowns branched from one run share its trunk, so the bootstrap must
            # resample them together: they carry the parent's run_id.
            "run_id": raw["parent_key"].fillna(raw["key"]).str[:12],
            "group": raw["sweep"],
            "point_id": raw["key"].str[:12],
            "kind": raw["kind"],
            "branch_tokens": raw["branch_tokens"],
            "params_total": raw["params_total"],
            "params_non_embedding": raw["params_non_embedding"],
            "flops_method": raw["method"],
            "flops_counted": raw["flops_counted"],
            "compute_level": raw["compute_level"],
            "seed": raw["seed"],
            "schedule": raw["schedule"],
        }
    ).reset_index(drop=True)
    frame.attrs["param_basis"] = bases[0] if bases else "unknown"
    return frame


def finished_curves(conn: sqlite3.Connection, path: Path, sweep: str | None) -> pd.DataFrame:
    """The training curves of the finished runs of ``sweep`` (every sweep when ``None``).

    One row per checkpoint with a loss (the ``curves`` table's ``val_loss``: the validation
    loss of our trainer, the chosen loss metric of an imported run), with the run's N, FLOP
    method, ``run_id``, sweep (``group``) and stored ``schedule`` (the trainer's or the
    importer's name for it, as stored: ``wsd``, ``cosine``, ``linear``, ... or empty), and
    ``run_end`` (True at the end of a training run: each run's last checkpoint and each WSD
    cooldown, which the store keeps as a point of its own under its parent's ``run_id``), in
    the order of :func:`finished_points` (each run's checkpoints by tokens), so that the run ends
    are its rows in its order. ``frame.attrs["notes"]`` says what was left out.

    Two columns say where each run's schedule stands (see :func:`_schedule_ends`):
    ``schedule_tokens``, the tokens at which the run's learning-rate schedule ends (a run whose
    curve stops before it was killed or is still running, and its last checkpoint is not the
    end of a run), and ``stable_tokens``, the end of a WSD run's stable phase (NaN where
    unknown or not WSD).

    Raises
    ------
    StoreError
        No curves; a run whose curve has fewer than 2 checkpoints with a loss; a loss that is
        not a finite positive number (each naming the run, its sweep and the field).
    """
    runs = finished_points(conn, path, sweep)
    keys = runs["point_id"].tolist()
    rows = pd.read_sql_query(
        "SELECT substr(c.key, 1, 12) AS point_id, c.tokens, c.val_loss, c.train_loss "
        "FROM curves c JOIN runs r ON r.key = c.key WHERE r.status = 'finished' "
        "ORDER BY c.key, c.tokens",
        conn,
    )
    rows = rows[rows["point_id"].isin(keys)].astype(
        {"val_loss": "float64", "train_loss": "float64"}
    )
    info = runs.set_index("point_id")

    def where(row: pd.Series) -> str:
        return (
            f"{path}: run {row['point_id']} (sweep {info.at[row['point_id'], 'group']}), "
            f"curve point at {int(row['tokens']):,} tokens"
        )

    # SQLite keeps a NaN as NULL. The trainer logs the training loss between evaluations
    # (val_loss NULL there, train_loss set); a point with neither is a loss that was NaN.
    nan = rows["val_loss"].isna() & rows["train_loss"].isna()
    if nan.any():
        raise StoreError(
            f"{where(rows[nan].iloc[0])}: loss (val_loss) is NaN or missing", field="loss"
        )
    bad = ~(np.isfinite(rows["val_loss"]) & (rows["val_loss"] > 0)) & rows["val_loss"].notna()
    if bad.any():
        row = rows[bad].iloc[0]
        raise StoreError(
            f"{where(row)}: loss (val_loss) {float(row['val_loss'])!r} is not a finite positive "
            "number",
            field="loss",
        )
    between = rows["val_loss"].isna() | (rows["tokens"] <= 0)
    notes = []
    if between.any():
        notes.append(
            f"left out {int(between.sum())} curve points without a validation loss (the "
            "training loss logged between evaluations) or at 0 tokens"
        )
    rows = rows[~between]
    if rows.empty:
        raise StoreError(
            f"{path}: no training curves in {f'sweep {sweep!r}' if sweep else 'the store'} "
            f"({len(runs)} finished runs, no curve point with a loss); fit the final losses "
            "without --curves",
            field="curves",
        )
    counts = rows.groupby("point_id").size()
    trained = runs[runs["kind"] == "run"]
    short = trained[~trained["point_id"].isin(counts[counts >= 2].index)]
    if len(short):
        first = short.iloc[0]
        have = int(counts.get(first["point_id"], 0))
        raise StoreError(
            f"{path}: run {first['point_id']} (sweep {first['group']}): its curve has {have} "
            f"checkpoint{'s' * (have != 1)} with a loss; a curve needs 2 or more "
            f"({len(short)} of {len(trained)} runs have fewer); fit the final losses without "
            "--curves",
            field="curves",
        )
    last = rows.groupby("point_id")["tokens"].transform("max")
    curve = rows.assign(run_end=rows["tokens"] >= last)
    # A WSD cooldown is a run of its own (the store keeps only its end): one more run end,
    # under its parent's run_id.
    branches = runs.loc[runs["kind"] == "branch", ["point_id", "tokens", "loss"]]
    lost = ~(np.isfinite(branches["loss"]) & (branches["loss"] > 0))
    if lost.any():
        row = branches[lost].iloc[0]
        raise StoreError(
            f"{path}: cooldown {row['point_id']} (sweep {info.at[row['point_id'], 'group']}) "
            f"at {int(row['tokens']):,} tokens: loss {float(row['loss'])!r} is not a finite "
            "positive number",
            field="loss",
        )
    curve = pd.concat(
        [curve, branches.rename(columns={"loss": "val_loss"}).assign(run_end=True)],
        ignore_index=True,
    )
    per_run = info.loc[curve["point_id"]].reset_index(drop=True)
    tokens = curve["tokens"].astype("float64").reset_index(drop=True)
    ends = _schedule_ends(conn, runs).loc[curve["point_id"]].reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "params": per_run["params"],
            "tokens": tokens,
            # The cost per token is the run's: its FLOPs scale with the checkpoint's tokens
            # (at the run's end, exactly its final point's FLOPs).
            "flops": per_run["flops"] * (tokens / per_run["tokens"]),
            "loss": curve["val_loss"].astype("float64").reset_index(drop=True),
            "run_id": per_run["run_id"],
            "group": per_run["group"],
            "point_id": curve["point_id"].reset_index(drop=True),
            "kind": per_run["kind"],
            "run_end": curve["run_end"].astype(bool).reset_index(drop=True),
            "params_total": per_run["params_total"],
            "params_non_embedding": per_run["params_non_embedding"],
            "flops_method": per_run["flops_method"],
            "compute_level": per_run["compute_level"],
            "seed": per_run["seed"],
            "schedule": per_run["schedule"],
            "schedule_tokens": ends["schedule_tokens"],
            "stable_tokens": ends["stable_tokens"],
        }
    )
    # In the order of the final points (each point's curve by tokens), so that the run ends
    # are the final points in their order: a fit of either sees the same table.
    order = frame["point_id"].map({key: i for i, key in enumerate(runs["point_id"])})
    frame = frame.iloc[np.lexsort((tokens.to_numpy(), order.to_numpy()))].reset_index(drop=True)
    frame.attrs["param_basis"] = runs.attrs["param_basis"]
    frame.attrs["notes"] = notes
    return frame


def _schedule_ends(conn: sqlite3.Connection, runs: pd.DataFrame) -> pd.DataFrame:
    """Per ``point_id`` of ``runs``: ``schedule_tokens`` and ``stable_tokens``.

    A run trained here ends its schedule at its planned tokens (the trainer stores a run when
    it has finished it); a cooldown at its own tokens. An imported run stores its schedule's
    length (the metadata's ``schedule_tokens``) as ``decay_tokens``, and 0 for its shape, since
    its logs do not say it: its curve ends where its logging stopped, which may be before the
    schedule's end. A WSD run trained here stores its final cooldown's length as
    ``decay_tokens``: its stable phase ends that many tokens before its end (an imported WSD
    run's stable phase is unknown).
    """
    raw = pd.read_sql_query(
        "SELECT substr(key, 1, 12) AS point_id, kind, schedule, tokens, decay_tokens, n_layer "
        "FROM runs WHERE status = 'finished'",
        conn,
    ).drop_duplicates("point_id")
    raw = raw[raw["point_id"].isin(runs["point_id"])].set_index("point_id")
    tokens = raw["tokens"].astype("float64")
    decay = pd.to_numeric(raw["decay_tokens"], errors="coerce").astype("float64")
    imported = (raw["n_layer"] == 0) & (raw["kind"] == "run")
    wsd = raw["schedule"].astype(str).str.strip().str.lower().eq("wsd")
    own_wsd = wsd & ~imported & (raw["kind"] == "run") & (decay > 0) & (decay < tokens)
    return pd.DataFrame(
        {
            "schedule_tokens": tokens.where(~imported, decay),
            "stable_tokens": (tokens - decay).where(own_wsd),
        },
        index=raw.index,
    )
