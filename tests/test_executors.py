"""Executors and the driver: retries, crashes, interruption and resume, local and Ray.

Most tests train with :func:`fake_train`, a cheap deterministic stand-in for the trainer whose
loss follows the Chinchilla law fitted by Hoffmann et al. (2022, eq. 10: E = 1.69, A = 406.4,
B = 410.7, α = 0.34, β = 0.28). Environment variables make it fail on purpose:
``FAKE_TRAIN_MODE`` = ``raise_once:<d_model>``, ``raise_always:<d_model>``,
``crash_once:<d_model>`` (the worker process exits), ``diverge:<d_model>`` (nan losses),
comma-separated; ``FAKE_TRAIN_STATE`` is the folder where "once" is remembered;
``FAKE_TRAIN_SLEEP`` seconds per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from scalinglab.counting import count_params, flops_per_token
from scalinglab.store import Store, load_store_runs
from scalinglab.sweep.backends import threads_per_worker
from scalinglab.sweep.budget import plan_sweep
from scalinglab.sweep.executors import run_sweep
from scalinglab.sweep.spec import parse_spec

pytest.importorskip("scalinglab.train.trainer")

# Hoffmann et al. (2022), eq. 10.
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def chinchilla_loss(params: float, tokens: float) -> float:
    return E + A / params**ALPHA + B / tokens**BETA


def fake_train(config, *, checkpoint_dir=None, on_progress=None):
    """A deterministic stand-in for ``train``: no torch work, a law-shaped loss."""
    from scalinglab.train.schedule import branch_total_steps

    shape = config.shape
    n = count_params(shape).non_embedding
    key = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    state = Path(os.environ.get("FAKE_TRAIN_STATE", "."))
    (state / f"pid-{os.getpid()}").touch()
    for mode in filter(None, os.environ.get("FAKE_TRAIN_MODE", "").split(",")):
        what, d_model = mode.split(":")
        if int(d_model) != shape.d_model:
            continue
        marker = state / f"{what}-{key}"
        if what == "raise_always":
            raise RuntimeError(f"fake failure of d_model {shape.d_model}")
        if not marker.exists():
            marker.write_text("done")
            if what == "raise_once":
                raise RuntimeError(f"fake transient failure of d_model {shape.d_model}")
            if what == "crash_once":
                os._exit(13)
        if what == "diverge":
            n = float("nan")  # every loss below comes out nan, as a diverged run's does
    time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0")))
    # Seed noise well below the law's differences, so seeds visibly matter but no more.
    noise = (int(hashlib.sha1(f"{config.seed}".encode()).hexdigest(), 16) % 1000) * 1e-6
    per_op = flops_per_token(shape).per_operation
    curve = []
    for i in (1, 2, 3, 4):
        t = config.tokens * i // 4
        point = {
            "tokens": t,
            "flops_6nd": 6.0 * count_params(shape).total * t,
            "flops_counted": float(per_op * t),
            "train_loss": chinchilla_loss(n, t) + noise,
            "val_loss": chinchilla_loss(n, t) + noise,
            "lr": 1e-3,
            "wall_s": 0.01 * i,
        }
        curve.append(point)
        if on_progress is not None:
            on_progress(point)
    step = config.batch_size * shape.context_length
    branches = []
    for b in config.branch_tokens:
        end = branch_total_steps(b // step, config.cooldown_fraction) * step
        branches.append(
            {
                "branch_tokens": b,
                "tokens": end,
                "val_loss": chinchilla_loss(n, end) + noise,
                "flops_6nd": 6.0 * count_params(shape).total * end,
                "flops_counted": float(per_op * end),
            }
        )
    return {
        "config": config.to_dict(),
        "params_total": count_params(shape).total,
        "params_non_embedding": n,
        "tokens": config.tokens,
        "flops_6nd": 6.0 * count_params(shape).total * config.tokens,
        "flops_counted": float(per_op * config.tokens),
        "val_loss": chinchilla_loss(n, config.tokens) + noise,
        "curve": curve,
        "branches": branches,
        "tokens_per_s": 1e6,
        "mfu": 0.0,
        "device": "cpu",
        "precision": "fp32",
        "wall_s": 0.04,
        "versions": {"fake": "1"},
    }


GRID = """
[sweep]
name = "grid"
[data]
vocab_size = 256
[model]
context_length = 32
[train]
batch_size = 8
[execution]
max_retries = 2
[design]
kind = "grid"
params = [2e4, 5e4, 1.2e5]
tokens = [1e5, 3e5]
"""


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    state = tmp_path / "fake-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_TRAIN_STATE", str(state))
    monkeypatch.delenv("FAKE_TRAIN_MODE", raising=False)
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "0")
    return monkeypatch


@pytest.fixture
def ray_tmp():
    """A short temporary folder for a private Ray (its socket paths must fit 107 bytes)."""
    import shutil

    from scalinglab.sweep.executors import default_ray_temp_dir

    folder = default_ray_temp_dir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _plan(text: str = GRID, workers: int = 2):
    return plan_sweep(parse_spec(text), workers=workers)


def test_threads_split_the_cores():
    assert threads_per_worker(1, 2) == 2
    assert threads_per_worker(2, 2) == 1
    assert threads_per_worker(3, 2) == 1
    assert threads_per_worker(2, 16) == 8


def test_local_sweep_records_every_run_once_then_does_nothing(tmp_path, fake_env):
    plan = _plan()
    events = []
    with Store(tmp_path / "s.db") as store:
        summary = run_sweep(plan, store, train_fn=fake_train, on_event=events.append)
        assert summary.complete and summary.finished == 6 and not summary.failed
        assert {e.kind for e in events} >= {"started", "progress", "finished"}
        again = run_sweep(plan, store, train_fn=fake_train)
        assert again.already_finished == 6 and again.finished == 0
        assert len(store.runs()) == 6
        assert store.curve(plan.runs[0].key).shape[0] == 4
    frame = load_store_runs(tmp_path / "s.db")
    assert len(frame) == 6
    for row in frame.itertuples():
        assert row.loss == pytest.approx(chinchilla_loss(row.params, row.tokens), abs=1e-3)


def test_failures_are_retried_then_recorded_and_the_sweep_goes_on(tmp_path, fake_env):
    plan = _plan()
    widths = sorted({r.shape.d_model for r in plan.runs})
    fake_env.setenv("FAKE_TRAIN_MODE", f"raise_once:{widths[0]},raise_always:{widths[1]}")
    with Store(tmp_path / "f.db") as store:
        summary = run_sweep(plan, store, train_fn=fake_train)
        runs = store.runs().set_index("key")
    assert len(summary.failed) == 2, "both runs of the always-failing width"
    assert summary.finished == 4 and summary.retries == 2 * 2 + 2
    for run in plan.runs:
        row = runs.loc[run.key]
        if run.shape.d_model == widths[1]:
            assert row["status"] == "failed" and row["attempts"] == 3
            assert "RuntimeError: fake failure of d_model" in row["error"]
        else:
            assert row["status"] == "finished"
            expected = 2 if run.shape.d_model == widths[0] else 1
            assert row["attempts"] == expected


def test_a_diverged_run_fails_at_once_without_retries(tmp_path, fake_env):
    plan = _plan()
    width = max(r.shape.d_model for r in plan.runs)
    fake_env.setenv("FAKE_TRAIN_MODE", f"diverge:{width}")
    with Store(tmp_path / "d.db") as store:
        summary = run_sweep(plan, store, train_fn=fake_train)
        failed = store.runs(status="failed")
    assert len(summary.failed) == 2 and summary.retries == 0
    assert (failed["attempts"] == 1).all()
    assert failed["error"].str.startswith("training diverged: final validation loss nan").all()


def test_a_crashed_worker_is_a_failed_attempt_and_the_pool_recovers(tmp_path, fake_env):
    plan = _plan()
    width = min(r.shape.d_model for r in plan.runs)
    fake_env.setenv("FAKE_TRAIN_MODE", f"crash_once:{width}")
    events = []
    with Store(tmp_path / "c.db") as store:
        summary = run_sweep(plan, store, train_fn=fake_train, on_event=events.append)
    assert summary.complete and summary.finished == 6
    retried = [e for e in events if e.kind == "retry"]
    assert retried and all("worker process died" in e.error for e in retried)
    assert len(load_store_runs(tmp_path / "c.db")) == 6


def test_interrupted_driver_keeps_finished_runs_and_resumes(tmp_path, fake_env):
    plan = _plan()
    path = tmp_path / "i.db"
    seen = []

    def interrupt_after_two(event):
        if event.kind == "finished":
            seen.append(event.run.key)
            if len(seen) == 2:
                raise KeyboardInterrupt

    with Store(path) as store, pytest.raises(KeyboardInterrupt):
        run_sweep(plan, store, workers=1, train_fn=fake_train, on_event=interrupt_after_two)
    with Store(path) as store:
        status = store.runs()["status"].value_counts().to_dict()
        assert status == {"finished": 2, "planned": 4}, "nothing left running, nothing lost"
        summary = run_sweep(plan, store, train_fn=fake_train)
        assert summary.already_finished == 2 and summary.finished == 4
        first = store.runs().set_index("key").loc[seen]
        assert (first["status"] == "finished").all() and (first["attempts"] == 1).all()
    frame = load_store_runs(path)
    assert len(frame) == 6 and frame["run_id"].is_unique


def gpu_fake_train(config, **kwargs):
    """``fake_train`` that also reports the GPUs its worker process was given."""
    result = fake_train(config, **kwargs)
    result["versions"] = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    return result


def test_local_workers_each_get_their_own_gpus(tmp_path, fake_env):
    fake_env.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    text = GRID.replace("batch_size = 8", 'batch_size = 8\ndevice = "cuda"')
    text = text.replace("max_retries = 2", "max_retries = 2\ngpus_per_run = 2")
    with Store(tmp_path / "g.db") as store:
        summary = run_sweep(_plan(text), store, train_fn=gpu_fake_train)
        seen = {json.loads(v)["gpus"] for v in store.runs()["versions_json"]}
    assert summary.complete
    assert seen and seen <= {"0,1", "2,3"}, seen


def test_gpus_for_our_trainer_need_a_cuda_device_in_the_spec():
    from scalinglab.sweep.spec_values import SpecError

    with pytest.raises(SpecError, match="set device") as caught:
        parse_spec(GRID.replace("max_retries = 2", "max_retries = 2\ngpus_per_run = 1"))
    assert caught.value.field == "train.device"


def test_one_driver_per_store(tmp_path, fake_env):
    from scalinglab.store import StoreError
    from scalinglab.sweep.executors import _driver_lock

    plan = _plan()
    with Store(tmp_path / "one.db") as store:
        with _driver_lock(store.path), pytest.raises(StoreError, match="another sweep driver"):
            run_sweep(plan, store, train_fn=fake_train)
        assert store.runs().empty, "the refused driver wrote nothing"


@pytest.mark.slow
def test_ray_executor_gives_the_same_runs(tmp_path, fake_env, ray_tmp):
    ray = pytest.importorskip("ray")
    import sys

    # The workers cannot import this test module by name; ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    plan = _plan()
    with Store(tmp_path / "local.db") as store:
        run_sweep(plan, store, train_fn=fake_train)
    with Store(tmp_path / "ray.db") as store:
        summary = run_sweep(
            plan,
            store,
            executor="ray",
            workers=2,
            threads=1,
            ray_temp_dir=ray_tmp,
            train_fn=fake_train,
        )
    assert summary.complete and summary.executor == "ray"
    assert not ray.is_initialized(), "the private Ray instance is shut down"
    local = load_store_runs(tmp_path / "local.db").set_index("point_id")
    remote = load_store_runs(tmp_path / "ray.db").set_index("point_id")
    assert sorted(local.index) == sorted(remote.index)
    assert (local["loss"] - remote.loc[local.index, "loss"]).abs().max() < 1e-12


REAL = """
[sweep]
name = "real-tiny"
[model]
context_length = 32
[train]
batch_size = 8
lr = 3e-3
eval_tokens = 4096
[design]
kind = "grid"
params = [1e4, 3e4]
tokens = [4e4]
"""


@pytest.mark.slow
def test_real_tiny_sweep_gives_the_same_losses_locally_and_on_ray(tmp_path, ray_tmp):
    """The real trainer, through both executors: same seeds, same runs, same losses."""
    pytest.importorskip("ray")
    plan = plan_sweep(parse_spec(REAL), workers=2)
    with Store(tmp_path / "local.db") as store:
        assert run_sweep(plan, store, threads=1).complete
    with Store(tmp_path / "ray.db") as store:
        summary = run_sweep(plan, store, executor="ray", threads=1, ray_temp_dir=ray_tmp)
        assert summary.complete
    local = load_store_runs(tmp_path / "local.db").set_index("point_id")
    remote = load_store_runs(tmp_path / "ray.db").set_index("point_id")
    assert sorted(local.index) == sorted(remote.index)
    # Bit-for-bit on CPU with one thread each (the trainer's determinism contract); allow
    # float noise in case a library picks another kernel.
    assert (local["loss"] - remote.loc[local.index, "loss"]).abs().max() < 1e-5
    assert local["loss"].between(0.5, 6.0).all(), "byte-level losses in nats"
