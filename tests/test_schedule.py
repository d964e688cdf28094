"""Learning-rate schedules: nanoGPT's cosine, WSD, and branched cooldowns."""

from __future__ import annotations

import math

import pytest

from scalinglab.train.schedule import Schedule, branch_total_steps


def nanogpt_get_lr(it: int) -> float:
    """nanoGPT's get_lr (train.py, commit 3adf61e) with the char-level Shakespeare settings."""
    learning_rate, min_lr, warmup_iters, lr_decay_iters = 1e-3, 1e-4, 100, 2000
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def test_cosine_is_nanogpts_schedule():
    s = Schedule("cosine", 1e-3, 2000, 100, min_lr_ratio=0.1)
    for step in range(2000):
        assert s.lr(step) == pytest.approx(nanogpt_get_lr(step), rel=1e-12)


def test_cosine_decays_monotonically_to_the_floor():
    s = Schedule("cosine", 3e-3, 500, 25, min_lr_ratio=0.05)
    lrs = [s.lr(k) for k in range(500)]
    assert lrs[:25] == sorted(lrs[:25])
    assert lrs[25:] == sorted(lrs[25:], reverse=True)
    assert lrs[25] == pytest.approx(3e-3)
    assert s.lr(500) == pytest.approx(3e-3 * 0.05)


@pytest.mark.parametrize("shape", ["1-sqrt", "linear"])
def test_wsd_holds_then_cools_down(shape):
    s = Schedule(
        "wsd", 1e-3, 1000, 50, min_lr_ratio=0.0, cooldown_fraction=0.2, cooldown_shape=shape
    )
    assert s.cooldown_steps == 200 and s.cooldown_start == 800
    assert all(s.lr(k) == 1e-3 for k in range(50, 800))
    assert s.lr(999) == pytest.approx(0.0, abs=1e-15)
    halfway = s.lr(800 + 99)  # progress 100/200
    expected = 1 - math.sqrt(0.5) if shape == "1-sqrt" else 0.5
    assert halfway == pytest.approx(1e-3 * expected)


def test_a_branch_is_the_shorter_wsd_run():
    main = Schedule("wsd", 1e-3, 1000, 40, min_lr_ratio=0.1, cooldown_fraction=0.2)
    for start in (40, 123, 400, 799, 800):
        branch = main.branched(start)
        standalone = Schedule("wsd", 1e-3, branch_total_steps(start, 0.2), 40, 0.1, 0.2)
        assert branch == standalone
        assert branch.cooldown_start == start
        # Up to the branch point it agrees with the main run.
        assert all(branch.lr(k) == main.lr(k) for k in range(start))


def test_branch_total_steps_always_exists():
    for f in (0.05, 0.2, 0.5, 0.9):
        for start in range(0, 400):
            total = branch_total_steps(start, f)
            assert total - max(1, round(f * total)) == start


def test_bad_schedules_fail_clearly():
    with pytest.raises(ValueError, match="schedule"):
        Schedule("linear", 1e-3, 10, 1)
    with pytest.raises(ValueError, match="warmup"):
        Schedule("cosine", 1e-3, 10, 10)
    with pytest.raises(ValueError, match="stable phase"):
        Schedule("wsd", 1e-3, 100, 10).branched(90)
    with pytest.raises(ValueError, match="only a WSD"):
        Schedule("cosine", 1e-3, 100, 10).branched(50)
