"""Writing imported runs into the store: the same ``runs``/``curves``/``sweeps`` tables a sweep
writes (so ``fit``, ``backtest``, ``report`` and ``sweep export`` read them unchanged), plus
``imports`` (versions) and ``metrics`` (accuracy and the other curves).

Every run of one import is written in one transaction, or none is. A run's key hashes its
identity (sources, metadata, metric, stitching), so importing the same thing twice adds
nothing; a run whose sources or metadata changed is written as a new version, and the version
before it leaves its sweep (it stays in the store, listed by ``Store.imports()``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np

from scalinglab._version import __version__
from scalinglab.counting import FLOPS_PER_PARAM_TOKEN
from scalinglab.importers.logs import LogImportError
from scalinglab.importers.metadata import RunMeta
from scalinglab.store import Store

__all__ = ["Outcome", "PreparedRun", "record_runs"]


@dataclass(frozen=True)
class PreparedRun:
    """One run ready to write: its curve on the token axis and everything about it."""

    name: str
    key: str
    identity: str
    meta: RunMeta
    metric: str
    metric_kind: str
    tokens: np.ndarray
    loss_nats: np.ndarray
    train_loss: np.ndarray | None
    lr: np.ndarray | None
    extra: tuple[tuple[str, str, np.ndarray | None, np.ndarray, np.ndarray], ...]
    sources: tuple[dict[str, str], ...]
    segments: tuple[str, ...]
    config: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What happened to one prepared run: ``imported`` (with its version) or ``unchanged``
    (already in the store: same sources, metadata and metric)."""

    run: PreparedRun
    status: str
    version: int
    note: str | None


def _rows(run: PreparedRun) -> tuple[Iterator[tuple], Iterator[tuple]]:
    """The ``curves`` and ``metrics`` rows of a run, built from whole arrays (a million points
    must not go through Python one float at a time). NaN binds as SQL NULL."""
    n = len(run.tokens)
    tokens = run.tokens.astype(np.int64)
    flops = FLOPS_PER_PARAM_TOKEN * float(run.meta.params) * tokens.astype(np.float64)
    empty = [None] * n

    def col(values: np.ndarray | None) -> list[float | None]:
        return empty if values is None else values.astype(np.float64).tolist()

    curve = zip(
        repeat(run.key, n),
        tokens.tolist(),
        flops.tolist(),
        col(run.train_loss),
        col(run.loss_nats),
        col(run.lr),
        strict=True,
    )
    metrics = (
        zip(
            repeat(run.key, len(xs)),
            repeat(metric, len(xs)),
            repeat(kind, len(xs)),
            steps.tolist() if steps is not None else repeat(None, len(xs)),
            xs.astype(np.int64).tolist(),
            values.astype(np.float64).tolist(),
            strict=True,
        )
        for metric, kind, steps, xs, values in run.extra
    )
    return curve, chain.from_iterable(metrics)


def _changes(before: Any, run: PreparedRun) -> str:
    """What differs from the previous version, in words (sources by path, metadata by key)."""
    old_sources = {s["path"]: s["sha256"] for s in json.loads(before["sources_json"])}
    new_sources = {s["path"]: s["sha256"] for s in run.sources}
    parts = []
    for path in sorted(old_sources.keys() | new_sources.keys()):
        old, new = old_sources.get(path), new_sources.get(path)
        if old != new:
            name = Path(path).name
            if old is None or new is None:
                parts.append(f"{name} {'added' if old is None else 'no longer given'}")
            else:
                parts.append(f"{name} changed (sha256 {old[:8]} → {new[:8]})")
    old_meta = json.loads(before["config_json"]).get("meta", {})
    for key, value in run.meta.to_dict().items():
        if old_meta.get(key) != value:
            parts.append(f"{key} {old_meta.get(key)!r} → {value!r}")
    if before["metric"] != run.metric:
        parts.append(f"metric {before['metric']!r} → {run.metric!r}")
    return "; ".join(parts) or "stitching changed"


def _plan(store: Store | None, runs: Sequence[PreparedRun]) -> list[Outcome]:
    """Which runs are new and at which version; checks the groups against the store."""
    outcomes = []
    sweeps: dict[str, Any] = {}
    if store is not None:
        sweeps = {r["name"]: r for r in store.execute("SELECT * FROM sweeps")}
    has_imports = store is not None and store.schema_version >= 2
    for run in runs:
        group = run.meta.group
        sweep = sweeps.get(group)
        if sweep is not None:
            if sweep["design"] != "import":
                raise LogImportError(
                    f"group {group!r} is a sweep of this store ({sweep['design']} design); "
                    "import into another group (--group)",
                    field="group",
                )
            for column, value in (
                ("param_basis", run.meta.param_basis),
                ("flops_method", run.meta.flops_method),
            ):
                if sweep[column] != value:
                    raise LogImportError(
                        f"group {group!r} holds runs with {column} {sweep[column]!r}; run "
                        f"{run.name!r} has {value!r}: import it into another group",
                        field=column,
                    )
        previous = []
        if has_imports:
            assert store is not None
            previous = store.execute(
                "SELECT i.key, i.version, i.metric, i.sources_json, r.config_json "
                "FROM imports i JOIN runs r ON r.key = i.key WHERE i.sweep = ? AND i.name = ? "
                "ORDER BY i.version",
                (group, run.name),
            )
        if any(p["key"] == run.key for p in previous):
            outcomes.append(Outcome(run, "unchanged", 0, "already in the store (same sources)"))
            continue
        version = (previous[-1]["version"] + 1) if previous else 1
        note = None
        if previous:
            note = (
                f"{_changes(previous[-1], run)} since version {version - 1}: imported as "
                f"version {version}; version {version - 1} is kept but left sweep {group!r}"
            )
        outcomes.append(Outcome(run, "imported", version, note))
    return outcomes


def _write(
    store: Store, outcomes: Sequence[Outcome], progress: Callable[[str, int, int], None] | None
) -> None:
    now = time.time()
    versions = json.dumps({"scalinglab": __version__}, sort_keys=True)
    # A million curve rows fill the primary-key index far past SQLite's 2 MiB default cache;
    # 64 MiB for this connection saved ~13% of the insert time here.
    store.execute("PRAGMA cache_size = -65536")
    with store.transaction() as cur:
        for i, outcome in enumerate(outcomes):
            if progress is not None:
                progress("write runs", i, len(outcomes))
            if outcome.status != "imported":
                continue
            run, meta = outcome.run, outcome.run.meta
            group = meta.group
            cur.execute(
                "INSERT INTO sweeps (name, spec_json, design, param_basis, flops_method, "
                "created_at, updated_at) VALUES (?, ?, 'import', ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET updated_at = excluded.updated_at",
                (
                    group,
                    json.dumps({"name": group, "import": True}),
                    meta.param_basis,
                    meta.flops_method,
                    now,
                    now,
                ),
            )
            if outcome.version > 1:
                cur.execute(
                    "DELETE FROM sweep_runs WHERE sweep = ? AND key IN "
                    "(SELECT key FROM imports WHERE sweep = ? AND name = ?)",
                    (group, group, run.name),
                )
            tokens = int(run.tokens[-1])
            params = meta.params
            flops_6nd = FLOPS_PER_PARAM_TOKEN * params * tokens
            per_op = (
                meta.flops_per_token * tokens if meta.flops_per_token is not None else flops_6nd
            )
            finite_train = (
                run.train_loss[np.isfinite(run.train_loss)] if run.train_loss is not None else []
            )
            cur.execute(
                "INSERT INTO runs (key, kind, status, attempts, config_json, seed, schedule, "
                "warmup_tokens, decay_tokens, n_layer, d_model, n_head, vocab_size, "
                "context_length, params_total, params_non_embedding, param_basis, tokens, "
                "flops_method, flops_per_operation, loss, train_loss, flops_6nd, versions_json, "
                "created_at, finished_at) VALUES "
                "(?, 'run', 'finished', 1, ?, ?, ?, ?, ?, 0, 0, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?)",
                (
                    run.key,
                    json.dumps(run.config, sort_keys=True),
                    meta.seed or 0,
                    meta.schedule,
                    meta.warmup_tokens,
                    meta.schedule_tokens,
                    meta.seq_len or 0,
                    meta.params_total or 0,
                    meta.params_non_embedding or 0,
                    meta.param_basis,
                    tokens,
                    meta.flops_method,
                    per_op,
                    float(run.loss_nats[np.isfinite(run.loss_nats)][-1]),
                    float(finite_train[-1]) if len(finite_train) else None,
                    flops_6nd,
                    versions,
                    now,
                    now,
                ),
            )
            curve, metrics = _rows(run)
            cur.executemany(
                "INSERT INTO curves (key, tokens, flops_6nd, train_loss, val_loss, lr) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                curve,
            )
            cur.executemany(
                "INSERT INTO metrics (key, metric, kind, step, tokens, value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                metrics,
            )
            position = cur.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM sweep_runs WHERE sweep = ?", (group,)
            ).fetchone()[0]
            cur.execute(
                "INSERT INTO sweep_runs (sweep, key, position) VALUES (?, ?, ?)",
                (group, run.key, position),
            )
            cur.execute(
                "INSERT INTO imports (key, sweep, name, version, identity, metric, sources_json, "
                "note, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.key,
                    group,
                    run.name,
                    outcome.version,
                    run.identity,
                    run.metric,
                    json.dumps(list(run.sources)),
                    outcome.note,
                    now,
                ),
            )


def record_runs(
    path: Path,
    runs: Sequence[PreparedRun],
    *,
    dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Outcome]:
    """Write the runs that are new to the store at ``path`` (created if missing).

    The store is read first and opened for writing only when some run is new, so a duplicate
    import leaves the file as it was.

    Raises
    ------
    LogImportError
        A group that is a sweep of the store, or whose N basis or FLOP method differs.
    StoreError
        The file is not a scalinglab store, or is too new.
    """
    if path.exists():
        with Store(path, readonly=True) as store:
            outcomes = _plan(store, runs)
    else:
        outcomes = _plan(None, runs)
    if dry_run or not any(o.status == "imported" for o in outcomes):
        return outcomes
    with Store(path) as store:
        # Planned again on the open store: another import may have landed since the read.
        outcomes = _plan(store, runs)
        _write(store, outcomes, progress)
        if progress is not None:
            progress("write runs", len(outcomes), len(outcomes))
    return outcomes
