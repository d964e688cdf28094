"""What the store records of a sweep and its planned runs: read-only protocols, and the rows.

The store sits below the sweep layer, so it cannot import :class:`scalinglab.sweep.SweepSpec`
or :class:`scalinglab.sweep.RunSpec`; it names the attributes it reads instead, and those
classes satisfy these protocols.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from scalinglab.counting import TransformerShape, flops_per_token
from scalinglab.store.schema import StoreError

__all__ = [
    "BranchRecord",
    "RunRecord",
    "SweepRecord",
    "insert_branch",
    "insert_run",
    "optional_float",
    "record_branches",
]


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


def insert_run(cur: sqlite3.Cursor, run: RunRecord, now: float) -> int:
    """Insert a planned run (kept as it is if its key is already stored); 1 if it was new."""
    c = _row_common(run)
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


def insert_branch(cur: sqlite3.Cursor, run: RunRecord, branch: BranchRecord, now: float) -> int:
    """Insert a planned WSD cooldown of ``run``; 1 if it was new."""
    c = _row_common(run)
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


def _decay_tokens(config: Mapping[str, Any], tokens: int) -> int | None:
    """The decay horizon: all of training for cosine, the final cooldown for WSD."""
    schedule = config.get("schedule")
    if schedule == "wsd":
        fraction = config.get("cooldown_fraction")
        return None if fraction is None else round(tokens * float(fraction))
    if schedule == "cosine":
        return tokens
    return None


def record_branches(
    cur: sqlite3.Cursor, run: RunRecord, result: Mapping[str, Any], versions: str, now: float
) -> None:
    """Mark ``run``'s planned WSD cooldowns finished with the losses ``result`` returned.

    Raises
    ------
    StoreError
        The trainer returned no cooldown for a planned branch point.
    """
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
                optional_float(got.get("val_loss")),
                optional_float(got.get("flops_6nd")),
                optional_float(got.get("flops_counted")),
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


def optional_float(value: Any) -> float | None:
    """``float(value)``, with ``None`` kept (SQL NULL)."""
    return None if value is None else float(value)
