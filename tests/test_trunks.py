"""Kept WSD trunks: the driver keeps each WSD run's stable-phase checkpoint in the store, starts
longer runs of the same stable phase from it, and a kill anywhere duplicates nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from scalinglab.store import Store, stable_dir
from scalinglab.sweep.budget import plan_sweep
from scalinglab.sweep.executors import run_sweep
from scalinglab.sweep.spec import parse_spec
from scalinglab.sweep.trunks import stable_key, start_limit
from scalinglab.train.config import TrainConfig
from test_design import HEAD
from test_executors import fake_train

pytest.importorskip("scalinglab.train.trainer")

# test_design's [data], [model] and [train] tables, WSD, as points.
SPEC = (
    '[sweep]\nname = "{name}"\n'
    + HEAD
    + 'schedule = "wsd"\neval_tokens = 4096\n[design]\nkind = "points"\npoints = [{points}]\n'
)
TRUNK = "[2e4, 3.2e4]"  # 125 steps of 256 tokens: warmup 6 steps, cooldown from step 100


def fake_wsd_train(config, *, checkpoint_dir=None, on_progress=None, resume_from=None):
    """:func:`fake_train`, leaving a stable-phase file (holding its tokens) as the trainer does,
    and saying where it resumed."""
    out = fake_train(config, checkpoint_dir=checkpoint_dir, on_progress=on_progress)
    if checkpoint_dir is not None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        (Path(checkpoint_dir) / "stable.pt").write_text(str(start_limit(config.to_dict())))
    if resume_from is not None:
        out["resumed_tokens"] = int(Path(resume_from).read_text())
    return out


def plan(name: str, points: str):
    return plan_sweep(parse_spec(SPEC.format(name=name, points=points)))


def continuation(trunk) -> str:
    """A point continuing ``trunk`` from its cooldown start: its warmup pinned."""
    cfg = TrainConfig.from_dict(trunk.config_dict)
    warmup = cfg.schedule_for_run().warmup_steps * cfg.tokens_per_step
    start = cfg.schedule_for_run().cooldown_start * cfg.tokens_per_step
    return f"[2e4, 6.4e4, [], {{warmup_tokens = {warmup}, resume_tokens = {start}}}]"


def rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()


def test_a_kill_between_keeping_and_recording_keeps_one_checkpoint_once(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_TRAIN_STATE", str(tmp_path))
    db, ckpt = tmp_path / "s.db", tmp_path / "s.db.ckpt"
    trunk_plan = plan("trunk", TRUNK)
    (trunk,) = trunk_plan.runs
    real = Store.record_result

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # as if the driver died after moving the file

    monkeypatch.setattr(Store, "record_result", killed)
    with Store(db) as store, pytest.raises(KeyboardInterrupt):
        run_sweep(trunk_plan, store, workers=1, train_fn=fake_wsd_train, checkpoint_root=ckpt)
    area = stable_dir(db)
    assert [p.name for p in area.iterdir()] == [f"{trunk.key[:16]}.pt"]
    assert rows(db, "stable_checkpoints") == []

    monkeypatch.setattr(Store, "record_result", real)
    with Store(db) as store:
        summary = run_sweep(
            trunk_plan, store, workers=1, train_fn=fake_wsd_train, checkpoint_root=ckpt
        )
        assert summary.finished == 1
        kept = store.kept_checkpoints()
        again = run_sweep(trunk_plan, store, workers=1, train_fn=fake_wsd_train)
        assert again.finished == 0 and again.already_finished == 1
    assert len(kept) == 1 and kept["exists"].all() and kept["bytes"].tolist() == [5]
    assert kept["key"].tolist() == [trunk.key]
    assert kept["stable_key"].tolist() == [stable_key(trunk.config_dict)]
    assert kept["tokens"].tolist() == [100 * 256]
    assert [p.name for p in area.iterdir()] == [f"{trunk.key[:16]}.pt"]
    assert not (ckpt / trunk.key[:16]).exists()  # the run's own folder is gone
    assert len(rows(db, "runs")) == 1


def test_a_longer_run_of_a_kept_stable_phase_starts_from_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TRAIN_STATE", str(tmp_path))
    db, ckpt = tmp_path / "s.db", tmp_path / "s.db.ckpt"
    (trunk,) = plan("trunk", TRUNK).runs
    later = plan("later", continuation(trunk))
    (run,) = later.runs
    assert run.resume_tokens == 100 * 256
    assert run.cost_flops == pytest.approx(run.flops * (1 - run.resume_tokens / run.tokens))
    with Store(db) as store:
        run_sweep(
            plan("trunk", TRUNK), store, workers=1, train_fn=fake_wsd_train, checkpoint_root=ckpt
        )
        assert run_sweep(
            later, store, workers=1, train_fn=fake_wsd_train, checkpoint_root=ckpt
        ).complete
        kept = store.kept_checkpoints().set_index("key")
    assert rows(db, "resumed_runs") == [(run.key, trunk.key, 100 * 256)]
    # The continuation keeps its own stable phase too, further on: the one later runs prefer.
    assert (
        kept.loc[run.key, "tokens"] == start_limit(run.config_dict) > kept.loc[trunk.key, "tokens"]
    )


def test_a_missing_checkpoint_trains_the_run_whole(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TRAIN_STATE", str(tmp_path))
    db, ckpt = tmp_path / "s.db", tmp_path / "s.db.ckpt"
    (trunk,) = plan("trunk", TRUNK).runs
    with Store(db) as store:
        run_sweep(
            plan("trunk", TRUNK), store, workers=1, train_fn=fake_wsd_train, checkpoint_root=ckpt
        )
        for path in stable_dir(db).iterdir():
            path.unlink()
        assert not store.kept_checkpoints()["exists"].any()
        assert run_sweep(
            plan("later", continuation(trunk)), store, workers=1, train_fn=fake_wsd_train
        ).complete
    assert rows(db, "resumed_runs") == []


@pytest.mark.slow
def test_the_real_trainer_continues_a_kept_trunk_to_the_run_trained_whole(tmp_path) -> None:
    from scalinglab.train.trainer import train

    db = tmp_path / "s.db"
    (trunk,) = plan("trunk", TRUNK).runs
    later = plan("later", continuation(trunk))
    with Store(db) as store:
        for p in (plan("trunk", TRUNK), later):
            assert run_sweep(
                p, store, workers=1, threads=1, checkpoint_root=tmp_path / "ck"
            ).complete
        stored = store.runs().set_index("key")
        kept = store.kept_checkpoints().set_index("key")
    (run,) = later.runs
    assert rows(db, "resumed_runs") == [(run.key, trunk.key, 100 * 256)]
    # One thread in the worker and here, one shard, fp32: the same operations on the same state,
    # so the continuation's loss is the whole run's bit for bit.
    whole = train(TrainConfig.from_dict({**run.config_dict, "threads": 1}))
    assert stored.loc[run.key, "loss"] == whole.val_loss
    # ≈ 12 bytes per parameter (weights and AdamW's two moments, fp32) plus the curve.
    params = int(stored.loc[trunk.key, "params_total"])
    assert 12 * params < kept.loc[trunk.key, "bytes"] < 12 * params + 200_000
