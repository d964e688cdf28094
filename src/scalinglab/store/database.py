"""The store: one SQLite file per project that keeps every planned and finished run.

Why SQLite: one file to copy, atomic transactions, and WAL mode lets ``sweep status`` or a
report read while the driver writes. Only the driver process writes. Each finished run is
committed in one transaction together with its curve and its WSD cooldown points, and the
run's key (a hash of its full config) is the table's primary key, so a crash between
"trained" and "recorded" can at worst retrain a run, never record it twice.

The tables are described in :mod:`.schema`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd

from scalinglab.store.checkpoints import (
    KeptCheckpoint,
    insert_kept,
    insert_resumed,
    kept_checkpoints,
)
from scalinglab.store.points import finished_curves, finished_points
from scalinglab.store.records import (
    RunRecord,
    SweepRecord,
    insert_branch,
    insert_run,
    optional_float,
    record_branches,
)
from scalinglab.store.schema import (
    DEFAULT_STORE,
    STATUSES,
    StoreError,
    Transaction,
    connect,
    migrate,
)

__all__ = ["Store", "load_store_runs"]


class Store:
    """A sweep store (SQLite, WAL). Open it for writing in the driver only.

    Parameters
    ----------
    path
        The store file (created with the schema if missing).
    readonly
        Open for reading only (``sweep status``, reports, fits); never creates the file.

    Raises
    ------
    StoreError
        The file is not a scalinglab store or has a newer schema version.
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._conn = connect(self.path, readonly=readonly)
        if not readonly:
            try:
                self._prepare()
            except sqlite3.Error as exc:
                self._conn.close()
                raise StoreError(f"{self.path}: cannot write the store ({exc})") from None

    def _prepare(self) -> None:
        """WAL mode and, for a new file, the schema."""
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode (only a power loss
        # can drop the last transactions), and avoids an fsync per run.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        with self._transaction() as cur:
            # Inside the write lock: two drivers starting on one new file must not both
            # create the schema.
            migrate(cur)

    # -- plumbing ----------------------------------------------------------------------

    def _read_sql(self, sql: str, conn: sqlite3.Connection, **kwargs: Any) -> pd.DataFrame:
        """``pd.read_sql_query``, with a database error as one StoreError line."""
        try:
            return pd.read_sql_query(sql, conn, **kwargs)
        except (sqlite3.Error, pd.errors.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path}: cannot read the store ({exc})") from None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> Transaction:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        return Transaction(self._conn)

    def transaction(self) -> Transaction:
        """``with store.transaction() as cur:`` one atomic write (``BEGIN IMMEDIATE``), rolled
        back on any error; for writers in other modules (the importers)."""
        return self._transaction()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run one statement outside a transaction and return its rows (a read, a PRAGMA)."""
        return self._conn.execute(sql, params).fetchall()

    @property
    def schema_version(self) -> int:
        """The schema version of the file."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    # -- writing (driver only) ----------------------------------------------------------

    def add_sweep(self, spec: SweepRecord, runs: Sequence[RunRecord]) -> int:
        """Record a sweep and its planned runs; runs already in the store are kept as they are.

        Returns
        -------
        int
            How many runs (and cooldown points) were new to the store.
        """
        now = time.time()
        added = 0
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO sweeps (name, spec_json, design, param_basis, flops_method, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec_json = excluded.spec_json, "
                "design = excluded.design, param_basis = excluded.param_basis, "
                "flops_method = excluded.flops_method, updated_at = excluded.updated_at",
                (
                    spec.name,
                    json.dumps(spec.to_dict(), sort_keys=True),
                    spec.design.kind,
                    spec.model.param_basis,
                    spec.model.flops_method,
                    now,
                    now,
                ),
            )
            start = cur.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM sweep_runs WHERE sweep = ?",
                (spec.name,),
            ).fetchone()[0]
            for i, run in enumerate(runs):
                added += insert_run(cur, run, now)
                for b in run.branches:
                    added += insert_branch(cur, run, b, now)
                keys = [run.key, *(b.key for b in run.branches)]
                for j, key in enumerate(keys):
                    cur.execute(
                        "INSERT INTO sweep_runs (sweep, key, position) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (spec.name, key, start + 1000 * i + j),
                    )
        return added

    def reset_running(self) -> int:
        """Put runs left ``running`` by a driver that died back to ``planned``; return how many."""
        with self._transaction() as cur:
            cur.execute("UPDATE runs SET status = 'planned' WHERE status = 'running'")
            return cur.rowcount

    def mark_running(
        self, key: str, *, threads: int | None = None, worker: str | None = None
    ) -> None:
        """Mark a run as submitted (never touches a finished run)."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'running', started_at = ?, threads = ?, worker = ?, "
                "attempts = attempts + 1 WHERE key = ? AND status != 'finished'",
                (time.time(), threads, worker, key),
            )

    def record_failure(self, key: str, error: str, *, final: bool) -> None:
        """Record a failed attempt: ``final`` marks the run ``failed``, else it awaits a retry."""
        with self._transaction() as cur:
            status = "failed" if final else "planned"
            cur.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? "
                "WHERE key = ? AND status != 'finished'",
                (status, error, time.time(), key),
            )
            if final:  # its cooldown points cannot exist without it
                cur.execute(
                    "UPDATE runs SET status = 'failed', error = ?, finished_at = ? "
                    "WHERE parent_key = ? AND status != 'finished'",
                    (f"the parent run {key[:12]} failed", time.time(), key),
                )

    def record_result(
        self,
        run: RunRecord,
        result: Mapping[str, Any],
        *,
        kept: KeptCheckpoint | None = None,
        trunk_key: str | None = None,
    ) -> bool:
        """Commit a finished run, its curve, its cooldown points, the stable-phase checkpoint
        it kept and the run it started from, in one transaction.

        Parameters
        ----------
        run
            The planned run.
        result
            ``TrainResult.to_dict()`` (plus optional ``worker`` and ``threads`` entries).
        kept
            The run's kept stable-phase checkpoint (:mod:`.checkpoints`).
        trunk_key
            The run whose checkpoint this one started from (``result["resumed_tokens"]``).

        Returns
        -------
        bool
            False when the run was already recorded (nothing is written twice).
        """
        now = time.time()
        curve = list(result.get("curve") or ())
        train_loss = curve[-1].get("train_loss") if curve else None
        versions = json.dumps(dict(result.get("versions") or {}), sort_keys=True)
        config = result.get("config") or {}
        warmup = config.get("warmup_tokens") if isinstance(config, Mapping) else None
        with self._transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = 'finished', loss = ?, train_loss = ?, flops_6nd = ?, "
                "flops_counted = ?, tokens_per_s = ?, mfu = ?, device = ?, precision = ?, "
                "threads = coalesce(?, threads), worker = coalesce(?, worker), versions_json = ?, "
                "warmup_tokens = coalesce(?, warmup_tokens), finished_at = ?, wall_s = ?, "
                "cpu_s = ?, error = NULL WHERE key = ? AND status != 'finished'",
                (
                    optional_float(result.get("val_loss")),
                    optional_float(train_loss),
                    optional_float(result.get("flops_6nd")),
                    optional_float(result.get("flops_counted")),
                    optional_float(result.get("tokens_per_s")),
                    optional_float(result.get("mfu")),
                    result.get("device"),
                    result.get("precision"),
                    result.get("threads"),
                    result.get("worker"),
                    versions,
                    warmup,
                    now,
                    optional_float(result.get("wall_s")),
                    optional_float(result.get("cpu_s")),
                    run.key,
                ),
            )
            if cur.rowcount == 0:
                return False
            if kept is not None:
                insert_kept(cur, run.key, kept, self.path, now)
            if trunk_key is not None and result.get("resumed_tokens"):
                insert_resumed(cur, run.key, trunk_key, int(result["resumed_tokens"]))
            cur.executemany(
                "INSERT INTO curves (key, tokens, flops_6nd, flops_counted, train_loss, val_loss, "
                "lr, wall_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (
                        run.key,
                        int(p["tokens"]),
                        optional_float(p.get("flops_6nd")),
                        optional_float(p.get("flops_counted")),
                        optional_float(p.get("train_loss")),
                        optional_float(p.get("val_loss")),
                        optional_float(p.get("lr")),
                        optional_float(p.get("wall_s")),
                    )
                    for p in curve
                ],
            )
            record_branches(cur, run, result, versions, now)
        return True

    # -- reading -----------------------------------------------------------------------

    def statuses(self, keys: Iterable[str]) -> dict[str, str]:
        """Status of each of ``keys`` that the store holds."""
        out: dict[str, str] = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):  # stay under SQLite's bound-variable limit
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                f"SELECT key, status FROM runs WHERE key IN ({marks})", chunk
            ):
                out[row["key"]] = row["status"]
        return out

    def kept_checkpoints(self) -> pd.DataFrame:
        """The stable-phase checkpoints finished WSD runs kept (see :mod:`.checkpoints`)."""
        return kept_checkpoints(self._conn, self.path)

    def sweeps(self) -> pd.DataFrame:
        """One row per sweep: name, design, N basis, FLOP method, run counts by status."""
        return self._read_sql(
            "SELECT s.name, s.design, s.param_basis, s.flops_method, s.created_at, s.updated_at, "
            "count(r.key) AS points, "
            "sum(r.status = 'finished') AS finished, sum(r.status = 'failed') AS failed, "
            "sum(r.status = 'running') AS running, sum(r.status = 'planned') AS planned "
            "FROM sweeps s LEFT JOIN sweep_runs sr ON sr.sweep = s.name "
            "LEFT JOIN runs r ON r.key = sr.key GROUP BY s.name ORDER BY s.created_at",
            self._conn,
        )

    def sweep_spec(self, sweep: str) -> dict[str, Any]:
        """The spec a sweep was recorded with, as its ``to_dict()`` mapping.

        Raises
        ------
        StoreError
            No sweep of that name.
        """
        self._require_sweep(sweep)
        row = self._conn.execute("SELECT spec_json FROM sweeps WHERE name = ?", (sweep,)).fetchone()
        return json.loads(row[0])

    def runs(self, sweep: str | None = None, *, status: str | None = None) -> pd.DataFrame:
        """Every run and cooldown point (all columns of the ``runs`` table, plus ``run_id``).

        Parameters
        ----------
        sweep
            Only the runs this sweep planned.
        status
            Only runs in this status (planned, running, finished, failed).
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        where, args = [], []
        if sweep is not None:
            where.append("r.key IN (SELECT key FROM sweep_runs WHERE sweep = ?)")
            args.append(sweep)
        if status is not None:
            where.append("r.status = ?")
            args.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        frame = self._read_sql(
            f"SELECT r.*, (SELECT min(sweep) FROM sweep_runs WHERE key = r.key) AS sweep "
            f"FROM runs r {clause} ORDER BY r.created_at, r.rowid",
            self._conn,
            params=args,
        )
        frame.insert(0, "run_id", frame["key"].str[:12])
        return frame

    def curve(self, run_id: str) -> pd.DataFrame:
        """The loss curve of one run (its key or a unique prefix of it, as ``run_id`` shows).

        Raises
        ------
        KeyError
            No run, or several, match ``run_id``.
        """
        rows = self._conn.execute(
            "SELECT key FROM runs WHERE key LIKE ? || '%' LIMIT 2", (run_id,)
        ).fetchall()
        if len(rows) != 1:
            raise KeyError(f"run_id {run_id!r} matches {len(rows) or 'no'} runs in {self.path}")
        return self._read_sql(
            "SELECT tokens, flops_6nd, flops_counted, train_loss, val_loss, lr, wall_s "
            "FROM curves WHERE key = ? ORDER BY tokens",
            self._conn,
            params=(rows[0]["key"],),
        )

    def curves(self, sweep: str | None = None) -> pd.DataFrame:
        """Every stored loss curve point, with the ``run_id`` it belongs to."""
        clause, args = "", []
        if sweep is not None:
            self._require_sweep(sweep)
            clause = "WHERE c.key IN (SELECT key FROM sweep_runs WHERE sweep = ?)"
            args.append(sweep)
        frame = self._read_sql(
            "SELECT substr(c.key, 1, 12) AS run_id, c.tokens, c.flops_6nd, c.flops_counted, "
            f"c.train_loss, c.val_loss, c.lr, c.wall_s FROM curves c {clause} "
            "ORDER BY c.key, c.tokens",
            self._conn,
            params=args,
        )
        return frame

    def imports(self) -> pd.DataFrame:
        """One row per imported run version: ``run_id``, sweep, name, version, whether it is
        ``current`` (a later version takes its place in the sweep), metric, sources, note."""
        if self.schema_version < 2:
            return pd.DataFrame(
                columns=["run_id", "sweep", "name", "version", "current", "metric", "note"]
            )
        return self._read_sql(
            "SELECT substr(i.key, 1, 12) AS run_id, i.sweep, i.name, i.version, "
            "EXISTS (SELECT 1 FROM sweep_runs sr WHERE sr.key = i.key) AS current, i.metric, "
            "i.sources_json, i.note, i.imported_at FROM imports i "
            "ORDER BY i.sweep, i.name, i.version",
            self._conn,
        )

    def metric_curves(self, sweep: str | None = None, *, kind: str | None = None) -> pd.DataFrame:
        """The other curves of imported runs (accuracies, the losses not chosen): ``run_id``,
        metric, kind, step, tokens, value."""
        if self.schema_version < 2:
            return pd.DataFrame(columns=["run_id", "metric", "kind", "step", "tokens", "value"])
        where, args = [], []
        if sweep is not None:
            self._require_sweep(sweep)
            where.append("m.key IN (SELECT key FROM sweep_runs WHERE sweep = ?)")
            args.append(sweep)
        if kind is not None:
            where.append("m.kind = ?")
            args.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._read_sql(
            "SELECT substr(m.key, 1, 12) AS run_id, m.metric, m.kind, m.step, m.tokens, m.value "
            f"FROM metrics m {clause} ORDER BY m.key, m.metric, m.tokens",
            self._conn,
            params=args,
        )

    def _require_sweep(self, sweep: str) -> None:
        found = self._conn.execute("SELECT 1 FROM sweeps WHERE name = ?", (sweep,)).fetchone()
        if found is None:
            names = [r[0] for r in self._conn.execute("SELECT name FROM sweeps ORDER BY name")]
            raise StoreError(
                f"{self.path}: no sweep named {sweep!r}; sweeps: {', '.join(names) or 'none'}",
                field="sweep",
            )

    def points(self, sweep: str | None = None, *, curves: bool = False) -> pd.DataFrame:
        """Finished points for fitting, or with ``curves`` every checkpoint of their training
        curves; see :func:`load_store_runs`."""
        if sweep is not None:
            self._require_sweep(sweep)
        try:
            return (finished_curves if curves else finished_points)(self._conn, self.path, sweep)
        except (sqlite3.Error, pd.errors.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path}: cannot read the store ({exc})") from None


def load_store_runs(
    path: str | Path, *, sweep: str | None = None, curves: bool = False
) -> pd.DataFrame:
    """Finished points of a store, as the fit engine reads them (``scalinglab fit scalinglab.db``).

    Parameters
    ----------
    path
        The store file. It is opened read-only and never modified.
    sweep
        Only this sweep's points.
    curves
        Every checkpoint of the runs' training curves instead (``scalinglab fit --curves``):
        one row per checkpoint with a loss, the run's N, FLOPs at the checkpoint's tokens, its
        stored ``schedule`` and ``run_end`` (a run's last checkpoint, or a WSD cooldown);
        ``frame.attrs["notes"]`` says which curve points were left out.

    Returns
    -------
    pandas.DataFrame
        One row per finished point (a plain run, or each WSD cooldown), columns ``params``
        (N as the sweep declared it), ``tokens``, ``flops`` (by the sweep's method), ``loss``
        (final validation loss, nats per token), ``run_id`` (cooldowns carry their parent's),
        ``group`` (the sweep), then both parameter counts and provenance columns;
        ``frame.attrs["param_basis"]`` names the N basis.

    Raises
    ------
    StoreError
        Missing file, not a scalinglab store, a newer schema version, an unknown sweep, or
        sweeps with different N bases read together; with ``curves``, a store without curves,
        a run with fewer than 2 checkpoints or a loss that is not finite and positive.
    """
    with closing(Store(path, readonly=True)) as store:
        return store.points(sweep, curves=curves)
