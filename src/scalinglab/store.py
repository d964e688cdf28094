"""The store: one SQLite file per project that keeps every planned and finished run.

Why SQLite: one file to copy, atomic transactions, and WAL mode lets ``sweep status`` or a
report read while the driver writes. Only the driver process writes. Each finished run is
committed in one transaction together with its curve and its WSD cooldown points, and the
run's key (a hash of its full config) is the table's primary key, so a crash between
"trained" and "recorded" can at worst retrain a run, never record it twice.

Tables (schema version in ``PRAGMA user_version``; a newer version is refused, not touched):

``sweeps``
    name, the spec as JSON, the N basis and FLOP method it declares, timestamps.
``runs``
    one row per training run and per WSD cooldown branch (``kind = 'branch'``, with
    ``parent_key`` and ``branch_tokens``): key, status, attempts, config, seed, schedule,
    warmup and decay horizon, shape, both parameter counts, tokens, FLOPs (6·N·D, per operation,
    and the trainer's count) and counting method, final losses, speed, device, library
    versions, timings (wall and CPU seconds) and the error of a failed run.
``sweep_runs``
    which sweeps planned which runs (runs are shared by key between sweeps).
``curves``
    the loss curve of each run: tokens, FLOPs, train and validation loss, lr, wall time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN, TransformerShape, flops_per_token
from scalinglab.errors import ScalingLabError

__all__ = [
    "DEFAULT_STORE",
    "SCHEMA_VERSION",
    "Store",
    "StoreError",
    "load_store_runs",
]

DEFAULT_STORE = "scalinglab.db"
SCHEMA_VERSION = 1
# "SLAB" in ASCII: marks the file as a scalinglab store (PRAGMA application_id).
APPLICATION_ID = 0x534C4142
STATUSES = ("planned", "running", "finished", "failed")

_SCHEMA = """
CREATE TABLE sweeps (
    name          TEXT PRIMARY KEY,
    spec_json     TEXT NOT NULL,
    design        TEXT NOT NULL,
    param_basis   TEXT NOT NULL CHECK (param_basis IN ('non_embedding', 'total')),
    flops_method  TEXT NOT NULL CHECK (flops_method IN ('6nd', 'per_operation')),
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE TABLE runs (
    key                  TEXT PRIMARY KEY,
    kind                 TEXT NOT NULL CHECK (kind IN ('run', 'branch')),
    parent_key           TEXT REFERENCES runs(key),
    branch_tokens        INTEGER,
    status               TEXT NOT NULL
                         CHECK (status IN ('planned', 'running', 'finished', 'failed')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    config_json          TEXT NOT NULL,
    seed                 INTEGER NOT NULL,
    schedule             TEXT,
    warmup_tokens        INTEGER,
    decay_tokens         INTEGER,
    n_layer              INTEGER NOT NULL,
    d_model              INTEGER NOT NULL,
    n_head               INTEGER NOT NULL,
    vocab_size           INTEGER NOT NULL,
    context_length       INTEGER NOT NULL,
    params_total         INTEGER NOT NULL,
    params_non_embedding INTEGER NOT NULL,
    param_basis          TEXT NOT NULL,
    tokens               INTEGER NOT NULL,
    flops_method         TEXT NOT NULL,
    flops_per_operation  REAL NOT NULL,
    compute_level        REAL,
    loss                 REAL,
    train_loss           REAL,
    flops_6nd            REAL,
    flops_counted        REAL,
    tokens_per_s         REAL,
    mfu                  REAL,
    device               TEXT,
    precision            TEXT,
    threads              INTEGER,
    worker               TEXT,
    versions_json        TEXT,
    created_at           REAL NOT NULL,
    started_at           REAL,
    finished_at          REAL,
    wall_s               REAL,
    cpu_s                REAL,
    error                TEXT
);
CREATE INDEX runs_status ON runs(status);
CREATE INDEX runs_parent ON runs(parent_key);
CREATE TABLE sweep_runs (
    sweep     TEXT NOT NULL REFERENCES sweeps(name),
    key       TEXT NOT NULL REFERENCES runs(key),
    position  INTEGER NOT NULL,
    PRIMARY KEY (sweep, key)
);
CREATE TABLE curves (
    key            TEXT NOT NULL REFERENCES runs(key),
    tokens         INTEGER NOT NULL,
    flops_6nd      REAL,
    flops_counted  REAL,
    train_loss     REAL,
    val_loss       REAL,
    lr             REAL,
    wall_s         REAL,
    PRIMARY KEY (key, tokens)
);
"""


class StoreError(ScalingLabError):
    """A store that cannot be opened or read: missing, not a scalinglab store, or too new."""


# The store sits below the sweep layer, so it names what it reads of a sweep's spec and of its
# planned runs as read-only protocols; scalinglab.sweep's SweepSpec and RunSpec satisfy them.
class _Design(Protocol):
    @property
    def kind(self) -> str: ...


class _Model(Protocol):
    @property
    def param_basis(self) -> str: ...
    @property
    def flops_method(self) -> str: ...


class SweepRecord(Protocol):
    """What the store records of a sweep (:class:`scalinglab.sweep.SweepSpec` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def design(self) -> _Design: ...
    @property
    def model(self) -> _Model: ...
    def to_dict(self) -> dict[str, Any]: ...


class BranchRecord(Protocol):
    """A planned WSD cooldown point: its key, where it branches, its total tokens."""

    @property
    def key(self) -> str: ...
    @property
    def branch_tokens(self) -> int: ...
    @property
    def tokens(self) -> int: ...


class RunRecord(Protocol):
    """What the store records of a planned run (:class:`scalinglab.sweep.RunSpec` is one)."""

    @property
    def key(self) -> str: ...
    @property
    def config(self) -> str: ...
    @property
    def config_dict(self) -> dict[str, Any]: ...
    @property
    def seed(self) -> int: ...
    @property
    def shape(self) -> TransformerShape: ...
    @property
    def tokens(self) -> int: ...
    @property
    def params_total(self) -> int: ...
    @property
    def params_non_embedding(self) -> int: ...
    @property
    def param_basis(self) -> str: ...
    @property
    def flops_method(self) -> str: ...
    @property
    def compute_level(self) -> float | None: ...
    @property
    def schedule(self) -> str | None: ...
    @property
    def warmup_tokens(self) -> int | None: ...
    @property
    def decay_tokens(self) -> int | None: ...
    @property
    def branches(self) -> Sequence[BranchRecord]: ...


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            if not path.exists():
                raise StoreError(f"{path}: no such store")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), so
            # each finished run is one atomic unit and nothing is left half-written.
            conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"{path}: cannot open the store ({exc})") from None
    conn.row_factory = sqlite3.Row
    try:
        _check_version(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a SQLite database ({exc})") from None
    if tables and app != APPLICATION_ID:
        raise StoreError(f"{path}: a SQLite database, but not a scalinglab store")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than this scalinglab reads "
            f"(≤ {SCHEMA_VERSION}); upgrade scalinglab. The store was not modified."
        )
    return version


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
        self._conn = _connect(self.path, readonly=readonly)
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
            # Checked again inside the write lock: two drivers starting on one new file
            # must not both create the schema.
            if cur.execute("PRAGMA user_version").fetchone()[0] == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
                cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    # -- plumbing ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        return _Transaction(self._conn)

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
                added += self._insert_run(cur, run, now)
                for b in run.branches:
                    added += self._insert_branch(cur, run, b, now)
                keys = [run.key, *(b.key for b in run.branches)]
                for j, key in enumerate(keys):
                    cur.execute(
                        "INSERT INTO sweep_runs (sweep, key, position) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (spec.name, key, start + 1000 * i + j),
                    )
        return added

    @staticmethod
    def _row_common(run: RunRecord) -> dict[str, Any]:
        config = run.config_dict
        s = run.shape

        return {
            "config_json": run.config,
            "seed": run.seed,
            "schedule": run.schedule or config.get("schedule"),
            "warmup_tokens": run.warmup_tokens
            if run.warmup_tokens is not None
            else config.get("warmup_tokens"),
            "n_layer": s.n_layer,
            "d_model": s.d_model,
            "n_head": s.n_head,
            "vocab_size": s.vocab_size,
            "context_length": s.context_length,
            "params_total": run.params_total,
            "params_non_embedding": run.params_non_embedding,
            "param_basis": run.param_basis,
            "flops_method": run.flops_method,
            "per_op": float(flops_per_token(s).per_operation),
        }

    def _insert_run(self, cur: sqlite3.Cursor, run: RunRecord, now: float) -> int:
        c = self._row_common(run)
        decay = run.decay_tokens
        if decay is None:
            decay = _decay_tokens(run.config_dict, run.tokens)
        cur.execute(
            "INSERT INTO runs (key, kind, status, config_json, seed, schedule, warmup_tokens, "
            "decay_tokens, n_layer, d_model, n_head, vocab_size, context_length, params_total, "
            "params_non_embedding, param_basis, tokens, flops_method, flops_per_operation, "
            "compute_level, created_at) VALUES "
            "(?, 'run', 'planned', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO NOTHING",
            (
                run.key,
                c["config_json"],
                c["seed"],
                c["schedule"],
                c["warmup_tokens"],
                decay,
                c["n_layer"],
                c["d_model"],
                c["n_head"],
                c["vocab_size"],
                c["context_length"],
                c["params_total"],
                c["params_non_embedding"],
                c["param_basis"],
                run.tokens,
                c["flops_method"],
                c["per_op"] * run.tokens,
                run.compute_level,
                now,
            ),
        )
        return cur.rowcount

    def _insert_branch(
        self, cur: sqlite3.Cursor, run: RunRecord, branch: BranchRecord, now: float
    ) -> int:
        c = self._row_common(run)
        cur.execute(
            "INSERT INTO runs (key, kind, parent_key, branch_tokens, status, config_json, seed, "
            "schedule, warmup_tokens, decay_tokens, n_layer, d_model, n_head, vocab_size, "
            "context_length, params_total, params_non_embedding, param_basis, tokens, "
            "flops_method, flops_per_operation, created_at) VALUES "
            "(?, 'branch', ?, ?, 'planned', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO NOTHING",
            (
                branch.key,
                run.key,
                branch.branch_tokens,
                c["config_json"],
                c["seed"],
                c["schedule"],
                c["warmup_tokens"],
                branch.tokens - branch.branch_tokens,
                c["n_layer"],
                c["d_model"],
                c["n_head"],
                c["vocab_size"],
                c["context_length"],
                c["params_total"],
                c["params_non_embedding"],
                c["param_basis"],
                branch.tokens,
                c["flops_method"],
                c["per_op"] * branch.tokens,
                now,
            ),
        )
        return cur.rowcount

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

    def record_result(self, run: RunRecord, result: Mapping[str, Any]) -> bool:
        """Commit a finished run, its curve and its cooldown points in one transaction.

        Parameters
        ----------
        run
            The planned run.
        result
            ``TrainResult.to_dict()`` (plus optional ``worker`` and ``threads`` entries).

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
                    _float(result.get("val_loss")),
                    _float(train_loss),
                    _float(result.get("flops_6nd")),
                    _float(result.get("flops_counted")),
                    _float(result.get("tokens_per_s")),
                    _float(result.get("mfu")),
                    result.get("device"),
                    result.get("precision"),
                    result.get("threads"),
                    result.get("worker"),
                    versions,
                    warmup,
                    now,
                    _float(result.get("wall_s")),
                    _float(result.get("cpu_s")),
                    run.key,
                ),
            )
            if cur.rowcount == 0:
                return False
            cur.executemany(
                "INSERT INTO curves (key, tokens, flops_6nd, flops_counted, train_loss, val_loss, "
                "lr, wall_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (
                        run.key,
                        int(p["tokens"]),
                        _float(p.get("flops_6nd")),
                        _float(p.get("flops_counted")),
                        _float(p.get("train_loss")),
                        _float(p.get("val_loss")),
                        _float(p.get("lr")),
                        _float(p.get("wall_s")),
                    )
                    for p in curve
                ],
            )
            by_point = {int(b["branch_tokens"]): b for b in result.get("branches") or ()}
            for planned in run.branches:
                got = by_point.get(planned.branch_tokens)
                if got is None:
                    raise StoreError(
                        f"run {run.key[:12]}: the trainer returned no cooldown branched at "
                        f"{planned.branch_tokens} tokens"
                    )
                cur.execute(
                    "UPDATE runs SET status = 'finished', loss = ?, flops_6nd = ?, "
                    "flops_counted = ?, tokens = ?, device = ?, precision = ?, versions_json = ?, "
                    "threads = ?, worker = ?, finished_at = ?, "
                    "error = NULL WHERE key = ? AND status != 'finished'",
                    (
                        _float(got.get("val_loss")),
                        _float(got.get("flops_6nd")),
                        _float(got.get("flops_counted")),
                        int(got.get("tokens", planned.tokens)),
                        result.get("device"),
                        result.get("precision"),
                        versions,
                        result.get("threads"),
                        result.get("worker"),
                        now,
                        planned.key,
                    ),
                )
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

    def sweeps(self) -> pd.DataFrame:
        """One row per sweep: name, design, N basis, FLOP method, run counts by status."""
        return pd.read_sql_query(
            "SELECT s.name, s.design, s.param_basis, s.flops_method, s.created_at, s.updated_at, "
            "count(r.key) AS points, "
            "sum(r.status = 'finished') AS finished, sum(r.status = 'failed') AS failed, "
            "sum(r.status = 'running') AS running, sum(r.status = 'planned') AS planned "
            "FROM sweeps s LEFT JOIN sweep_runs sr ON sr.sweep = s.name "
            "LEFT JOIN runs r ON r.key = sr.key GROUP BY s.name ORDER BY s.created_at",
            self._conn,
        )

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
        frame = pd.read_sql_query(
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
        return pd.read_sql_query(
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
        frame = pd.read_sql_query(
            "SELECT substr(c.key, 1, 12) AS run_id, c.tokens, c.flops_6nd, c.flops_counted, "
            f"c.train_loss, c.val_loss, c.lr, c.wall_s FROM curves c {clause} "
            "ORDER BY c.key, c.tokens",
            self._conn,
            params=args,
        )
        return frame

    def _require_sweep(self, sweep: str) -> None:
        found = self._conn.execute("SELECT 1 FROM sweeps WHERE name = ?", (sweep,)).fetchone()
        if found is None:
            names = [r[0] for r in self._conn.execute("SELECT name FROM sweeps ORDER BY name")]
            raise StoreError(
                f"{self.path}: no sweep named {sweep!r}; sweeps: {', '.join(names) or 'none'}",
                field="sweep",
            )

    def points(self, sweep: str | None = None) -> pd.DataFrame:
        """Finished points for fitting; see :func:`load_store_runs`."""
        if sweep is not None:
            self._require_sweep(sweep)
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
        raw = pd.read_sql_query(query, self._conn, params=args)
        # A run several sweeps share appears once: under the first sweep (by name) to plan it.
        raw = raw.sort_values(["sweep"], kind="stable").drop_duplicates("key", keep="first")
        bases = sorted(set(raw["basis"]))
        if len(bases) > 1:
            raise StoreError(
                f"{self.path}: sweeps count N differently ({', '.join(bases)}); "
                "read one sweep at a time (sweep=...)",
                field="sweep",
            )
        if sweep is not None and not bases:
            basis_row = self._conn.execute(
                "SELECT param_basis FROM sweeps WHERE name = ?", (sweep,)
            ).fetchone()
            bases = [basis_row[0]]
        params = raw["params_non_embedding"].where(
            raw["basis"] == "non_embedding", raw["params_total"]
        )
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


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (KeyboardInterrupt too)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Cursor:
        self._cur = self._conn.cursor()
        self._cur.execute("BEGIN IMMEDIATE")
        return self._cur

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._cur.execute("COMMIT")
        elif self._conn.in_transaction:
            self._cur.execute("ROLLBACK")
        self._cur.close()


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _decay_tokens(config: Mapping[str, Any], tokens: int) -> int | None:
    """The decay horizon: all of training for cosine, the final cooldown for WSD."""
    schedule = config.get("schedule")
    if schedule == "wsd":
        fraction = config.get("cooldown_fraction")
        return None if fraction is None else round(tokens * float(fraction))
    if schedule == "cosine":
        return tokens
    return None


def load_store_runs(path: str | Path, *, sweep: str | None = None) -> pd.DataFrame:
    """Finished points of a store, as the fit engine reads them (``scalinglab fit scalinglab.db``).

    Parameters
    ----------
    path
        The store file. It is opened read-only and never modified.
    sweep
        Only this sweep's points.

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
        sweeps with different N bases read together.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store")
    if os.path.getsize(path) == 0:
        raise StoreError(f"{path}: an empty file, not a scalinglab store")
    with closing(Store(path, readonly=True)) as store:
        return store.points(sweep)
