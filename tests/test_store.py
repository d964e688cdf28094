"""The sweep store: WAL SQLite, atomic run + curve commits, no duplicates, newer schemas refused."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from scalinglab.counting import TransformerShape, count_params, flops_per_token
from scalinglab.runs import load_runs
from scalinglab.store import (
    SCHEMA_VERSION,
    KeptCheckpoint,
    Store,
    StoreError,
    load_store_runs,
)
from scalinglab.sweep.runspec import BranchSpec, RunSpec, run_key
from scalinglab.sweep.spec import parse_spec

SPEC = parse_spec('[sweep]\nname = "s1"\n[design]\nkind = "grid"\nparams = [1e5]\ntokens = [1e6]\n')


def make_run(
    n_layer: int, tokens: int, *, branches: tuple[int, ...] = (), seed: int = 0
) -> RunSpec:
    """A planned run built by hand (no trainer needed)."""
    shape = TransformerShape(n_layer, 64, 4, 256, 64)
    counts = count_params(shape)
    config = {
        "shape": shape.__dict__,
        "tokens": tokens,
        "seed": seed,
        "schedule": "wsd" if branches else "cosine",
        "cooldown_fraction": 0.2,
        "branch_tokens": list(branches),
    }
    key = run_key(config)
    n = counts.non_embedding
    planned = tuple(
        BranchSpec(
            hashlib.sha256(f"{key}{b}".encode()).hexdigest(),
            b,
            int(b / 0.8),
            6.0 * n * int(b / 0.8),
        )
        for b in branches
    )
    return RunSpec(
        key=key,
        config=json.dumps(config, sort_keys=True),
        shape=shape,
        seed=seed,
        tokens=tokens,
        params=n,
        params_total=counts.total,
        params_non_embedding=n,
        param_basis="non_embedding",
        flops_method="6nd",
        flops=6.0 * n * tokens,
        cost_flops=6.0 * n * tokens,
        branches=planned,
    )


def fake_result(run: RunSpec, loss: float = 2.5) -> dict:
    """What ``TrainResult.to_dict()`` holds, with a three-point curve."""
    per_op = flops_per_token(run.shape).per_operation
    curve = [
        {
            "tokens": t,
            "flops_6nd": 6.0 * run.params_total * t,
            "flops_counted": per_op * t,
            "train_loss": loss + 1.0 - t / run.tokens,
            "val_loss": loss + 1.0 - t / run.tokens,
            "lr": 1e-3,
            "wall_s": t / 1e4,
        }
        for t in (run.tokens // 4, run.tokens // 2, run.tokens)
    ]
    return {
        "config": run.config_dict | {"warmup_tokens": 512},
        "val_loss": loss,
        "curve": curve,
        "branches": [
            {
                "branch_tokens": b.branch_tokens,
                "tokens": b.tokens,
                "val_loss": loss + 0.1,
                "flops_6nd": 1.0,
                "flops_counted": 1.0,
            }
            for b in run.branches
        ],
        "flops_6nd": 6.0 * run.params_total * run.tokens,
        "flops_counted": per_op * run.tokens,
        "tokens_per_s": 1e4,
        "mfu": 0.1,
        "device": "cpu",
        "precision": "fp32",
        "wall_s": 1.0,
        "versions": {"torch": "x", "python": "3"},
        "threads": 1,
        "worker": "test:1",
        "cpu_s": 0.5,
    }


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.db") as s:
        yield s


def test_new_store_is_wal_with_schema_version(tmp_path):
    path = tmp_path / "new.db"
    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sweeps", "runs", "sweep_runs", "curves"} <= tables
    conn.close()


def test_a_schema_2_store_gains_the_checkpoint_tables_once(tmp_path):
    path = tmp_path / "old.db"
    run = make_run(1, 4096)
    with Store(path) as s:
        s.add_sweep(SPEC, [run])
        s.record_result(run, fake_result(run))
    with sqlite3.connect(path) as conn:  # what schema 2 wrote
        conn.execute("DROP TABLE stable_checkpoints")
        conn.execute("DROP TABLE resumed_runs")
        conn.execute("PRAGMA user_version = 2")
    with Store(path, readonly=True) as s:  # read as it is: no checkpoints, nothing written
        assert s.schema_version == 2 and s.kept_checkpoints().empty
    for _ in range(2):  # opened for writing, twice: migrated once, the run untouched
        with Store(path) as s:
            assert s.schema_version == SCHEMA_VERSION == 3
            assert s.kept_checkpoints().empty and s.statuses([run.key]) == {run.key: "finished"}
    file = tmp_path / "trunk.pt"
    file.write_bytes(b"12345")
    second = make_run(2, 4096)
    with Store(path) as s:
        s.add_sweep(SPEC, [second])
        kept = KeptCheckpoint("phase", file, 1024, 5)
        assert s.record_result(second, fake_result(second), kept=kept, trunk_key=run.key)
        assert not s.record_result(second, fake_result(second), kept=kept)  # never twice
        (row,) = s.kept_checkpoints().itertuples()
    assert (row.key, row.path, row.tokens, row.bytes, row.exists) == (
        second.key,
        str(file),
        1024,
        5,
        True,
    )
    file.unlink()
    with Store(path, readonly=True) as s:
        assert not s.kept_checkpoints()["exists"].any()  # a deleted file is never trusted


def test_add_sweep_is_idempotent(store):
    runs = [make_run(1, 4096), make_run(2, 4096)]
    assert store.add_sweep(SPEC, runs) == 2
    assert store.add_sweep(SPEC, runs) == 0
    frame = store.runs("s1")
    assert len(frame) == 2 and set(frame["status"]) == {"planned"}
    assert store.sweeps().loc[0, "points"] == 2


def test_result_is_recorded_once_with_its_curve(store):
    run = make_run(1, 4096)
    store.add_sweep(SPEC, [run])
    store.mark_running(run.key, threads=1)
    assert store.record_result(run, fake_result(run))
    assert not store.record_result(run, fake_result(run, loss=9.0)), "second record is refused"
    rows = store.runs()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["status"] == "finished" and row["loss"] == 2.5
    assert row["attempts"] == 1 and row["warmup_tokens"] == 512 and row["decay_tokens"] == 4096
    assert row["cpu_s"] == 0.5
    assert row["params_total"] == run.params_total
    assert json.loads(row["versions_json"])["torch"] == "x"
    curve = store.curve(row["run_id"])
    assert list(curve["tokens"]) == [1024, 2048, 4096]


def test_points_match_the_fit_contract(tmp_path):
    path = tmp_path / "p.db"
    runs = [make_run(1, 4096), make_run(2, 8192), make_run(3, 4096, branches=(1024, 2048))]
    with Store(path) as s:
        s.add_sweep(SPEC, runs)
        for i, r in enumerate(runs):
            s.record_result(r, fake_result(r, loss=3.0 - i))
    frame = load_store_runs(path)
    assert frame.attrs["param_basis"] == "non_embedding"
    assert len(frame) == 5, "three runs and two cooldown points"
    for column in ("params", "tokens", "flops", "loss", "run_id", "group"):
        assert column in frame
    assert (frame["flops"] == 6.0 * frame["params"] * frame["tokens"]).all()
    assert set(frame["group"]) == {"s1"}
    wsd = frame[frame["params"] == runs[2].params]
    assert len(wsd) == 3 and wsd["run_id"].nunique() == 1, "cooldowns resample with their run"
    assert sorted(wsd["tokens"]) == [1280, 2560, 4096]


def test_fit_engine_reads_the_store(tmp_path):
    path = tmp_path / "fit.db"
    runs = [make_run(n, t) for n in (1, 2, 3) for t in (4096, 8192)]
    with Store(path) as s:
        s.add_sweep(SPEC, runs)
        for r in runs:
            s.record_result(r, fake_result(r))
    table = load_runs(path)
    assert len(table) == 6 and table.param_basis == "non_embedding"


def test_missing_branch_rolls_the_whole_run_back(store):
    run = make_run(2, 4096, branches=(1024,))
    store.add_sweep(SPEC, [run])
    bad = fake_result(run)
    bad["branches"] = []
    with pytest.raises(StoreError, match="no cooldown branched at 1024"):
        store.record_result(run, bad)
    rows = store.runs()
    assert set(rows["status"]) == {"planned"}, "neither the run nor its branch was recorded"
    assert store.curve(run.key).empty, "no curve rows left behind"


def test_failures_retries_and_reset(store):
    run = make_run(2, 4096, branches=(1024,))
    store.add_sweep(SPEC, [run])
    store.mark_running(run.key)
    store.record_failure(run.key, "boom 1", final=False)
    assert store.statuses([run.key])[run.key] == "planned"
    store.mark_running(run.key)
    assert store.reset_running() == 1
    store.mark_running(run.key)
    store.record_failure(run.key, "boom 3", final=True)
    rows = store.runs().set_index("kind")
    assert rows.loc["run", "status"] == "failed" and rows.loc["run", "attempts"] == 3
    assert rows.loc["run", "error"] == "boom 3"
    assert rows.loc["branch", "status"] == "failed", "a failed run's cooldowns fail with it"
    assert load_store_runs(store.path).empty


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "future.db"
    with Store(path) as s:
        s.add_sweep(SPEC, [make_run(1, 4096)])
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        Store(path)
    with pytest.raises(StoreError, match="newer"):
        load_store_runs(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_foreign_files_are_refused(tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a scalinglab store"):
        Store(other)
    text = tmp_path / "text.db"
    text.write_text("hello, not a database, " * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        load_store_runs(text)
    with pytest.raises(StoreError, match="no such store"):
        load_store_runs(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_sweeps_share_runs_but_not_param_bases(tmp_path):
    path = tmp_path / "two.db"
    other = parse_spec(
        '[sweep]\nname = "s2"\n[model]\nparam_basis = "total"\n'
        '[design]\nkind = "grid"\nparams = [1e5]\ntokens = [1e6]\n'
    )
    shared, own = make_run(1, 4096), make_run(2, 4096)
    with Store(path) as s:
        s.add_sweep(SPEC, [shared])
        assert s.add_sweep(other, [shared, own]) == 1, "the shared run is stored once"
        s.record_result(shared, fake_result(shared))
        s.record_result(own, fake_result(own))
    with pytest.raises(StoreError, match="count N differently"):
        load_store_runs(path)
    two = load_store_runs(path, sweep="s2")
    assert len(two) == 2 and two.attrs["param_basis"] == "total"
    assert set(two["params"]) == {shared.params_total, own.params_total}
    with pytest.raises(StoreError, match="no sweep named 'nope'"):
        load_store_runs(path, sweep="nope")


def test_readonly_store_cannot_write(tmp_path):
    path = tmp_path / "ro.db"
    Store(path).close()
    with Store(path, readonly=True) as s, pytest.raises(StoreError, match="read-only"):
        s.add_sweep(SPEC, [make_run(1, 4096)])
