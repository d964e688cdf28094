"""The store's finished points as the fit engine reads them: one row per run or WSD cooldown.

N is taken as each sweep declares it (total or non-embedding) and C by its counting method
(C = 6ND, or per operation); cooldowns carry their parent's ``run_id`` so the bootstrap
resamples a trunk and its branches together.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.store.schema import StoreError

__all__ = ["finished_points"]


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
