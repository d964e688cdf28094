"""``scalinglab sweep``: plan, run, status, export, one-line errors, and SIGKILL-proof resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.store import APPLICATION_ID, SCHEMA_VERSION

pytest.importorskip("scalinglab.train.trainer")

TESTS = Path(__file__).resolve().parent
runner = CliRunner()

SPEC = """
[sweep]
name = "cli"
[data]
vocab_size = 256
[model]
context_length = 32
[train]
batch_size = 8
[execution]
workers = 2
[design]
kind = "grid"
params = [2e4, 5e4, 1.2e5]
tokens = [1e5, 2e5, 4e5]
"""


def run_cli(*args: str, env: dict | None = None, **kwargs):
    """Run the real console entry point, as a user would (one-line errors, exit codes)."""
    return subprocess.run(
        [sys.executable, "-c", "from scalinglab.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        **kwargs,
    )


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    state = tmp_path / "fake-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_TRAIN_STATE", str(state))
    monkeypatch.delenv("FAKE_TRAIN_MODE", raising=False)
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "0")
    return state


def test_help_lists_the_commands():
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0
    for command in ("plan", "run", "status", "export"):
        assert command in result.output


def test_plan_prints_runs_totals_and_coverage(spec_file):
    result = runner.invoke(app, ["sweep", "plan", str(spec_file), "--no-probe", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_runs"] == 9 and data["n_points"] == 9
    assert data["total_flops"] == pytest.approx(sum(r["cost_flops"] for r in data["runs"]))
    assert data["est_wall_s"] is None
    assert not any("compute spans" in w for w in data["coverage"]["warnings"])
    table = runner.invoke(app, ["sweep", "plan", str(spec_file), "--no-probe"])
    assert table.exit_code == 0
    assert "9 runs, 9 points, total" in table.stdout
    assert "coverage:" in table.stdout


@pytest.mark.slow
def test_plan_estimates_wall_time_with_the_probe(spec_file):
    result = runner.invoke(app, ["sweep", "plan", str(spec_file), "--json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["est_wall_s"] > 0 and all(r["est_s"] > 0 for r in data["runs"])


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (("[design]", "[design]\nshape = 3"), "design.shape: unknown key"),
        (("[sweep]", "[budget]\nflops = -5\n[sweep]"), "budget.flops: must be > 0"),
        (("params = [2e4", "params = [3"), "design.params[0]: 3 non-embedding parameters"),
        (("[sweep]", "[budget]\nflops = 1e9\n[sweep]"), "budget.flops: the design needs"),
    ],
)
def test_bad_specs_fail_in_one_line_naming_the_key(tmp_path, patch, message):
    path = tmp_path / "bad.toml"
    path.write_text(SPEC.replace(*patch, 1))
    result = runner.invoke(app, ["sweep", "plan", str(path), "--no-probe"])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_console_script_reports_a_bad_spec_without_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SPEC.replace("[sweep]", "[sweep]\nseeed = 1", 1))
    result = run_cli("sweep", "run", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {path}: sweep.seeed: unknown key (did you mean 'seed'?); allowed: name, seed, "
        "store"
    )


def test_run_status_export(tmp_path, spec_file, fake_env):
    store = tmp_path / "cli.db"
    args = ["sweep", "run", str(spec_file), "--store", str(store)]
    result = runner.invoke(app, [*args, "--train-fn", "test_executors:fake_train", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["finished"] == 9 and summary["complete"] and summary["threads"] >= 1

    status = runner.invoke(app, ["sweep", "status", "--store", str(store), "--json"])
    assert status.exit_code == 0, status.output
    sweeps = json.loads(status.stdout)["sweeps"]
    assert sweeps[0]["name"] == "cli" and sweeps[0]["finished"] == 9
    assert "cli" in runner.invoke(app, ["sweep", "status", "--store", str(store)]).stdout

    csv = runner.invoke(app, ["sweep", "export", "--store", str(store), "--format", "csv"])
    assert csv.exit_code == 0
    assert csv.stdout.splitlines()[0].startswith("params,tokens,flops,loss,run_id,group")
    assert len(csv.stdout.strip().splitlines()) == 10
    out = tmp_path / "points.parquet"
    parquet = runner.invoke(
        app, ["sweep", "export", "--store", str(store), "--format", "parquet", "--out", str(out)]
    )
    assert parquet.exit_code == 0, parquet.output
    assert len(pd.read_parquet(out)) == 9
    lines = runner.invoke(
        app, ["sweep", "export", "--store", str(store), "-f", "jsonl", "--what", "curves"]
    )
    assert len(lines.stdout.strip().splitlines()) == 9 * 4

    again = runner.invoke(app, [*args, "--train-fn", "test_executors:fake_train", "--json"])
    assert json.loads(again.stdout)["already_finished"] == 9


def test_failed_runs_exit_1_and_show_in_status(tmp_path, spec_file, fake_env, monkeypatch):
    store = tmp_path / "fail.db"
    plan = runner.invoke(app, ["sweep", "plan", str(spec_file), "--no-probe", "--json"])
    width = min(r["d_model"] for r in json.loads(plan.stdout)["runs"])
    monkeypatch.setenv("FAKE_TRAIN_MODE", f"raise_always:{width}")
    args = ["sweep", "run", str(spec_file), "--store", str(store), "--max-retries", "0"]
    result = runner.invoke(app, [*args, "--train-fn", "test_executors:fake_train", "--json"])
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)["failed"]) == 3
    status = runner.invoke(app, ["sweep", "status", "--store", str(store), "--json"])
    failed = json.loads(status.stdout)["failed"]
    assert len(failed) == 3 and all("fake failure of d_model" in f["error"] for f in failed)
    table = runner.invoke(app, ["sweep", "status", "--store", str(store)])
    assert "Failed runs" in table.stdout


def test_store_errors_are_one_line(tmp_path, spec_file):
    folder = runner.invoke(app, ["sweep", "run", str(spec_file), "--store", str(tmp_path)])
    assert folder.exit_code == 2 and "cannot open the store" in folder.stderr
    missing = runner.invoke(app, ["sweep", "status", "--store", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "no such store" in missing.stderr
    future = tmp_path / "future.db"
    conn = sqlite3.connect(future)
    conn.execute("CREATE TABLE runs (x)")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = future.read_bytes()
    result = run_cli("sweep", "export", "--store", str(future))
    assert result.returncode == 2 and "newer than this scalinglab reads" in result.stderr
    assert future.read_bytes() == before
    bad = runner.invoke(app, ["sweep", "export", "--format", "xlsx"])
    assert bad.exit_code == 2 and "--format must be csv, parquet or jsonl" in bad.stderr


def _finished(store: Path) -> dict[str, float]:
    if not store.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        rows = conn.execute("SELECT key, finished_at FROM runs WHERE status = 'finished'")
        out = dict(rows.fetchall())
        conn.close()
        return out
    except sqlite3.DatabaseError:
        return {}


def _wait_for(predicate, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_sigkill_of_the_driver_loses_and_duplicates_nothing(tmp_path, spec_file, fake_env):
    store = tmp_path / "kill.db"
    env = dict(os.environ, PYTHONPATH=str(TESTS), FAKE_TRAIN_SLEEP="0.4")
    args = ["sweep", "run", str(spec_file), "--store", str(store), "--workers", "2"]
    args += ["--train-fn", "test_executors:fake_train", "--json"]
    command = [sys.executable, "-c", "from scalinglab.cli import main; main()", *args]
    kept: dict[str, float] = {}
    # Kill as soon as something runs, then after 3 and after 6 finished runs.
    for finished_before_kill in (0, 3, 6):
        driver = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if finished_before_kill == 0:
            _wait_for(lambda: store.exists() and _running(store) > 0)
        else:
            _wait_for(lambda n=finished_before_kill: len(_finished(store)) >= n)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        now = _finished(store)
        for key, finished_at in kept.items():
            assert now[key] == finished_at, "a finished run was lost or recorded again"
        kept = now
        # Workers die with their driver: no orphan keeps training.
        _wait_for(lambda: not _live_workers(fake_env), timeout_s=20)
    final = run_cli(*args, env=env, timeout=300)
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["complete"] and summary["already_finished"] == len(kept)
    assert summary["already_finished"] + summary["finished"] == 9
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT count(*), count(DISTINCT key) FROM runs").fetchone() == (9, 9)
    assert conn.execute("SELECT count(*) FROM runs WHERE status != 'finished'").fetchone() == (0,)
    per_run = conn.execute("SELECT count(*) FROM curves GROUP BY key").fetchall()
    assert per_run == [(4,)] * 9, "each curve recorded exactly once"
    for key, finished_at in kept.items():
        got = conn.execute("SELECT finished_at FROM runs WHERE key = ?", (key,)).fetchone()
        assert got == (finished_at,)
    conn.close()


def _running(store: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        n = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
        conn.close()
        return n
    except sqlite3.DatabaseError:
        return 0


def _live_workers(state: Path) -> list[int]:
    """Worker processes the fake trainer recorded that are still alive."""
    alive = []
    for path in state.glob("pid-*"):
        pid = int(path.name.split("-")[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # A zombie (exited, not yet reaped by a dead parent) trains nothing.
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z":
            continue
        alive.append(pid)
    return alive
