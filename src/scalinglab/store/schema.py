"""The store's file: its SQLite schema and version, opening it, its error, its transactions.

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
``imports`` (schema 2)
    one row per run version that ``scalinglab import`` read from another tool's logs: its
    import group (the ``sweeps`` row it joins), name, version, identity (the hash of its
    sources, metadata and metric), the sources and a note. An imported run's ``runs`` row
    records 0 for the shape columns (``n_layer`` ... ``vocab_size``, and ``context_length``
    unless given) and for a parameter count its user did not give: the logs do not say them.
``metrics`` (schema 2)
    the other curves of an imported run, by kind: accuracy-type metrics (never a loss), and
    the loss and perplexity metrics not chosen as its loss; step, tokens, value.
``stable_checkpoints`` (schema 3)
    the stable-phase checkpoint a finished WSD run kept (one per run): the hash of its stable
    phase (which runs it can start), the file (relative to the store's folder), the tokens
    trained at it, its size in bytes.
``resumed_runs`` (schema 3)
    which runs started from another run's stable-phase checkpoint, and the tokens that run
    trained for them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scalinglab.errors import ScalingLabError

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_STORE",
    "SCHEMA",
    "SCHEMA_2",
    "SCHEMA_3",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_SUFFIXES",
    "StoreError",
    "Transaction",
    "connect",
    "migrate",
]

DEFAULT_STORE = "scalinglab.db"
# A path with one of these suffixes is read as a store, any other as a runs table.
STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SCHEMA_VERSION = 3
# "SLAB" in ASCII: marks the file as a scalinglab store (PRAGMA application_id).
APPLICATION_ID = 0x534C4142
STATUSES = ("planned", "running", "finished", "failed")

SCHEMA = """
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

# Schema 2 adds the imported runs' tables; a schema-1 store gains them when next opened for
# writing (the tables before are unchanged, so nothing else migrates).
SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS imports (
    key           TEXT PRIMARY KEY REFERENCES runs(key),
    sweep         TEXT NOT NULL REFERENCES sweeps(name),
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    identity      TEXT NOT NULL,
    metric        TEXT NOT NULL,
    sources_json  TEXT NOT NULL,
    note          TEXT,
    imported_at   REAL NOT NULL,
    UNIQUE (sweep, name, version)
);
CREATE TABLE IF NOT EXISTS metrics (
    key     TEXT NOT NULL REFERENCES runs(key),
    metric  TEXT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('loss', 'perplexity', 'accuracy')),
    step    INTEGER,
    tokens  INTEGER NOT NULL,
    value   REAL NOT NULL,
    PRIMARY KEY (key, metric, tokens)
);
"""

# Schema 3 adds the kept stable-phase checkpoints of WSD runs and the runs resumed from them;
# like schema 2, new tables only, so an older store gains them when next opened for writing.
SCHEMA_3 = """
CREATE TABLE IF NOT EXISTS stable_checkpoints (
    key         TEXT PRIMARY KEY REFERENCES runs(key),
    stable_key  TEXT NOT NULL,
    path        TEXT NOT NULL,
    tokens      INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stable_checkpoints_phase ON stable_checkpoints(stable_key);
CREATE TABLE IF NOT EXISTS resumed_runs (
    key        TEXT PRIMARY KEY REFERENCES runs(key),
    trunk_key  TEXT NOT NULL REFERENCES runs(key),
    tokens     INTEGER NOT NULL
);
"""


def migrate(cur: sqlite3.Cursor) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` inside the caller's write transaction.

    Idempotent: every later schema only adds tables (``IF NOT EXISTS``), so a store at any
    older version, or one a killed migration left half-done, ends the same.
    """
    version = cur.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    ddl = (SCHEMA if version == 0 else "") + SCHEMA_2 + SCHEMA_3
    for statement in ddl.split(";"):
        if statement.strip():
            cur.execute(statement)
    cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    cur.execute(f"PRAGMA application_id = {APPLICATION_ID}")


class StoreError(ScalingLabError):
    """A store that cannot be opened or read: missing, not a scalinglab store, or too new."""


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            if not path.exists():
                raise StoreError(f"{path}: no such store")
            if path.is_dir():
                raise StoreError(f"{path}: a folder, not a store")
            if path.stat().st_size == 0:
                raise StoreError(f"{path}: an empty file, not a scalinglab store")
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
        check_version(conn, path)
        if readonly:
            check_readable(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def check_version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # damaged text, too
        raise StoreError(f"{path}: not a SQLite database ({exc})") from None
    if tables and app != APPLICATION_ID:
        raise StoreError(f"{path}: a SQLite database, but not a scalinglab store")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version} is newer than this scalinglab reads "
            f"(≤ {SCHEMA_VERSION}); upgrade scalinglab. The store was not modified."
        )
    return version


def check_readable(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse, before any query, a store a reader cannot use: no schema, or damaged pages.

    ``PRAGMA quick_check`` reads every page once (linear in the file), so a corrupt page is
    one line here instead of a pandas traceback, or silently missing rows, later.
    """
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: the store is damaged ({exc})") from None
    if problems != ["ok"]:
        detail = [line for p in problems for line in p.splitlines() if not line.startswith("***")]
        raise StoreError(f"{path}: the store is damaged ({(detail or problems)[0].strip()})")
    missing = [t for t in ("sweeps", "runs", "sweep_runs", "curves") if t not in tables]
    if missing:
        raise StoreError(
            f"{path}: not a scalinglab store (no table {', '.join(missing)}; "
            "it has no schema, or another program made it)"
        )


class Transaction:
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
