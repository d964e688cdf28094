"""Stable-phase checkpoints: a finished WSD run keeps its state at its cooldown start, and a
longer run of the same stable phase starts from it."""

from __future__ import annotations

import pytest
import torch

from scalinglab.errors import ScalingLabError
from scalinglab.train import trainer
from scalinglab.train.checkpoints import STABLE_NAME, check_stable, load_state
from scalinglab.train.schedule import branch_total_steps
from scalinglab.train.trainer import CHECKPOINT_NAME, train
from test_trainer import tiny_config

TPS = 8 * 32  # tokens per step of tiny_config
WSD = dict(schedule="wsd", warmup_tokens=4 * TPS)


def _state(config, step: int, stable: bool = True) -> dict:
    return {"config": config.to_dict(), "step": step, "branches": [], "stable": stable}


def test_the_stable_phase_ignores_length_and_branches_only():
    a = tiny_config(tokens=40 * TPS, **WSD)
    assert (
        a.stable_phase()
        == tiny_config(tokens=90 * TPS, branch_tokens=(20 * TPS,), **WSD).stable_phase()
    )
    # The default warmup is 5 % of the run: two lengths warm up differently, so they differ.
    assert (
        tiny_config(tokens=40 * TPS, schedule="wsd").stable_phase()
        != tiny_config(tokens=90 * TPS, schedule="wsd").stable_phase()
    )
    assert a.stable_phase() != tiny_config(tokens=40 * TPS, lr=2e-3, **WSD).stable_phase()
    with pytest.raises(ValueError, match="only a WSD run"):
        tiny_config().stable_phase()


def test_a_stable_checkpoint_is_refused_where_it_cannot_start_the_run(tmp_path):
    trunk = tiny_config(tokens=40 * TPS, **WSD)  # cooldown starts at step 32
    path = tmp_path / STABLE_NAME
    longer = tiny_config(tokens=60 * TPS, **WSD)  # cooldown starts at step 48
    resumed = check_stable(_state(trunk, 32), longer, path)
    assert resumed["config"] == longer.to_dict() and not resumed["done"]
    with pytest.raises(ValueError, match="past this run's cooldown start"):
        check_stable(_state(trunk, 32), tiny_config(tokens=30 * TPS, **WSD), path)
    with pytest.raises(ValueError, match="differs in lr"):
        check_stable(_state(trunk, 32), tiny_config(tokens=60 * TPS, lr=2e-3, **WSD), path)
    with pytest.raises(ValueError, match="differs in warmup_steps"):
        check_stable(_state(trunk, 32), tiny_config(tokens=60 * TPS, schedule="wsd"), path)
    with pytest.raises(ValueError, match="not a stable-phase checkpoint"):
        check_stable(_state(trunk, 32, stable=False), longer, path)
    with pytest.raises(ValueError, match="branches a cooldown earlier, at 5120"):
        check_stable(
            _state(trunk, 32), tiny_config(tokens=60 * TPS, branch_tokens=(20 * TPS,), **WSD), path
        )


def test_a_foreign_file_is_one_line_naming_the_option(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ScalingLabError, match="not a scalinglab checkpoint") as caught:
        load_state(path, "resume_from")
    assert caught.value.field == "resume_from"


@pytest.mark.slow
def test_a_longer_run_resumes_a_kept_stable_phase_and_matches_one_branched_in_a_run(
    tmp_path, monkeypatch
):
    steps = []
    real_step = trainer._Stepper.__call__

    def counted(self, x, y, lr):
        steps.append(lr)
        return real_step(self, x, y, lr)

    monkeypatch.setattr(trainer._Stepper, "__call__", counted)
    trunk = tiny_config(tokens=40 * TPS, **WSD)
    trunk_dir = tmp_path / "trunk"
    train(trunk, checkpoint_dir=trunk_dir)
    assert len(steps) == 40
    kept = torch.load(trunk_dir / STABLE_NAME, weights_only=True)
    assert kept["stable"] and kept["step"] == trunk.schedule_for_run().cooldown_start == 32

    # A run of 50 steps cools down from step 40: it trains steps 32..49 only.
    longer = tiny_config(tokens=branch_total_steps(40, 0.2) * TPS, **WSD)
    steps.clear()
    resumed = train(longer, checkpoint_dir=tmp_path / "longer", resume_from=trunk_dir / STABLE_NAME)
    assert len(steps) == 50 - 32 and resumed.resumed_tokens == 32 * TPS
    assert resumed.tokens == 50 * TPS

    # The same point as a cooldown branched at step 40 of a 60-step run trained in one go: same
    # thread count, one shard, fp32 and the same batches, so the same operations in the same
    # order on the same state (torch.save/load copies tensors exactly): bit-identical.
    whole = train(tiny_config(tokens=60 * TPS, branch_tokens=(40 * TPS,), **WSD))
    (branch,) = whole.branches
    assert branch.tokens == resumed.tokens
    assert resumed.val_loss == branch.val_loss
    # And the run trained whole from step 0.
    assert train(longer).val_loss == resumed.val_loss

    # Killed after it finished but before anyone read it: its own checkpoint answers, untrained.
    steps.clear()
    again = train(longer, checkpoint_dir=tmp_path / "longer", resume_from=trunk_dir / STABLE_NAME)
    assert again == resumed and not steps
    assert (tmp_path / "longer" / CHECKPOINT_NAME).exists()
