"""The trainer: configs, accounting, determinism, WSD branches, kill-and-resume, synthetic truth."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from scalinglab.counting import TransformerShape, count_params, flops_per_token
from scalinglab.errors import ScalingLabError
from scalinglab.train.corpus import parse_synthetic
from scalinglab.train.schedule import Schedule, branch_total_steps
from scalinglab.train.trainer import CHECKPOINT_NAME, TrainConfig, TrainResult, train

TINY = TransformerShape(n_layer=1, d_model=32, n_head=2, vocab_size=65, context_length=32)


# The mechanics tests train on a seeded synthetic source: it needs no reference data, so they
# run wherever the suite runs, CI included (its 64 symbols fit TINY's vocabulary of 65).
MECHANICS_CORPUS = "synthetic:order=1,alphabet=64"


def tiny_config(**overrides) -> TrainConfig:
    fields = dict(
        shape=TINY,
        tokens=40 * 8 * 32,  # 40 steps of 8 sequences of 32 tokens
        corpus=MECHANICS_CORPUS,
        batch_size=8,
        eval_interval_tokens=10 * 8 * 32,
        log_interval_tokens=5 * 8 * 32,
        eval_tokens=2048,
        threads=1,
        precision="fp32",
    )
    fields.update(overrides)
    return TrainConfig(**fields)


# --- configs (no training) ---------------------------------------------------------------------


def test_config_round_trips_through_json():
    cfg = TrainConfig(
        TransformerShape(2, 64, 4, 256, 128, positional="rotary", mlp="gated"),
        tokens=10**6,
        schedule="wsd",
        branch_tokens=(200_000, 400_000),
        warmup_tokens=20_000,
    )
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


def test_steps_and_schedule_follow_the_tokens():
    cfg = TrainConfig(TINY, tokens=100_000, batch_size=10)
    assert cfg.tokens_per_step == 320
    assert cfg.total_steps == round(100_000 / 320)
    sched = cfg.schedule_for_run()
    assert sched.warmup_steps == round(0.05 * cfg.total_steps)  # the documented default
    assert sched.min_lr == pytest.approx(cfg.lr * 0.1)


def test_bad_configs_fail_at_construction():
    with pytest.raises(ValueError, match="needs schedule='wsd'"):
        TrainConfig(TINY, tokens=10**5, branch_tokens=(10_000,))
    with pytest.raises(ValueError, match="stable phase"):
        TrainConfig(TINY, tokens=10**5, schedule="wsd", branch_tokens=(95_000,))
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(TINY, tokens=10**5, precision="fp8")
    with pytest.raises(ValueError, match="tokens"):
        TrainConfig(TINY, tokens=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(TINY, tokens=10**5, lr=-1.0)
    with pytest.raises(ScalingLabError, match="cooldown_fraction") as caught:
        TrainConfig(TINY, tokens=10**5, schedule="wsd", cooldown_fraction=1.0)
    assert caught.value.field == "cooldown_fraction"
    with pytest.raises(ScalingLabError, match="peak_lr") as caught:
        Schedule("cosine", -1.0, 10, 0)
    assert caught.value.field == "peak_lr"
    with pytest.raises(ScalingLabError, match="stable phase") as caught:
        TrainConfig(TINY, tokens=10**5, schedule="wsd", branch_tokens=(95_000,))
    assert caught.value.field == "branch_tokens"
    with pytest.raises(ScalingLabError, match="device") as caught:
        TrainConfig(TINY, tokens=10**5, device="tpu")
    assert caught.value.field == "device"
    assert TrainConfig(TINY, tokens=10**5, device="cuda:1").device == "cuda:1"


def test_cuda_is_refused_clearly_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA"):
        train(tiny_config(device="cuda"))


def test_compile_is_automatic_on_cuda_for_long_runs_and_never_on_cpu():
    from scalinglab.train.config import COMPILE_MIN_STEPS
    from scalinglab.train.trainer import _shard_count

    step = 8 * 32
    cpu = tiny_config()
    assert cpu.compile is False and not cpu.compiles
    assert cpu.to_dict()["compile"] is False, "CPU runs keep the config (and key) they had"
    long = tiny_config(device="cuda", tokens=COMPILE_MIN_STEPS * step)
    short = tiny_config(device="cuda", tokens=(COMPILE_MIN_STEPS - 1) * step)
    assert long.compile is None and long.compiles and not short.compiles
    assert not tiny_config(device="cuda", tokens=COMPILE_MIN_STEPS * step, compile=False).compiles
    assert tiny_config(compile=True).compiles
    assert TrainConfig.from_dict(json.loads(json.dumps(long.to_dict()))) == long
    # On a GPU a step is one batch on the device: no CPU data-parallel shards.
    assert _shard_count(long, "cuda", 8) == 1 and _shard_count(cpu, "cpu", 2) == 2


def test_auto_precision_follows_the_cpus_bf16_units():
    from scalinglab.train.device import cpu_has_native_bf16, resolve_runtime
    from scalinglab.units import measured_cpu_peak_flops

    before = torch.get_num_threads()
    try:
        rt = resolve_runtime("cpu", "auto", threads=1)
        expected = "fp32"
        if cpu_has_native_bf16():  # then the (cached) matmul probes decide
            bf16, fp32 = (measured_cpu_peak_flops(p, threads=1) for p in ("bf16", "fp32"))
            expected = "bf16" if bf16 >= 1.5 * fp32 else "fp32"
        assert rt.precision == expected
        assert rt.threads == 1 == torch.get_num_threads()
        assert rt.peak_flops > 0
        with pytest.raises(ValueError, match="precision"):
            resolve_runtime("cpu", "fp16")
        with pytest.raises(ValueError, match="device"):
            resolve_runtime("tpu")
    finally:
        torch.set_num_threads(before)


# --- training runs -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_accounts_for_params_tokens_and_flops(capfd):
    threads_before = torch.get_num_threads()
    points = []
    cfg = tiny_config()
    r = train(cfg, on_progress=points.append)
    assert capfd.readouterr() == ("", "")  # train never prints
    assert torch.get_num_threads() == threads_before
    counts, per_token = count_params(TINY), flops_per_token(TINY)
    assert (r.params_total, r.params_non_embedding) == (counts.total, counts.non_embedding)
    assert r.tokens == 40 * 8 * 32
    assert r.flops_6nd == 6 * counts.total * r.tokens
    assert r.flops_counted == per_token.per_operation * r.tokens
    assert list(r.curve) == points
    assert [p.tokens for p in r.curve] == sorted({p.tokens for p in r.curve})
    assert [p.val_loss is not None for p in r.curve].count(True) == 4  # every 10 of 40 steps
    assert r.val_loss == r.curve[-1].val_loss < math.log(65)  # learned something
    assert r.tokens_per_s > 0 and 0 < r.mfu < 1
    assert r.precision == "fp32"
    json.dumps(r.to_dict())  # JSON-safe
    assert TrainResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


@pytest.mark.slow
def test_runs_are_deterministic_given_the_seed():
    a = train(tiny_config(tokens=20 * 8 * 32))
    b = train(tiny_config(tokens=20 * 8 * 32))
    c = train(tiny_config(tokens=20 * 8 * 32, seed=1))
    assert [p.val_loss for p in a.curve] == [p.val_loss for p in b.curve]
    assert a.val_loss != c.val_loss


@pytest.mark.slow
def test_data_parallel_threads_give_the_same_run():
    # threads=2 splits each batch over two single-threaded workers; the summed gradient is the
    # full-batch one up to float rounding, and the fixed summation order keeps it deterministic.
    one = train(tiny_config(tokens=20 * 8 * 32))
    two = train(tiny_config(tokens=20 * 8 * 32, threads=2))
    again = train(tiny_config(tokens=20 * 8 * 32, threads=2))
    assert [p.train_loss for p in two.curve] == [p.train_loss for p in again.curve]
    assert two.val_loss == again.val_loss
    for a, b in zip(one.curve, two.curve, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)
    assert two.val_loss == pytest.approx(one.val_loss, abs=1e-4)


@pytest.mark.slow
def test_a_wsd_branch_is_the_shorter_run():
    tps = 8 * 32
    common = dict(schedule="wsd", warmup_tokens=4 * tps, eval_interval_tokens=10**9)
    branched = train(tiny_config(tokens=60 * tps, branch_tokens=(24 * tps,), **common))
    plain = train(tiny_config(tokens=60 * tps, **common))
    (branch,) = branched.branches
    assert branch.branch_tokens == 24 * tps
    assert branch.tokens == branch_total_steps(24, 0.2) * tps
    short = train(tiny_config(tokens=branch.tokens, **common))
    assert branch.val_loss == pytest.approx(short.val_loss, abs=1e-5)
    assert branch.flops_6nd == short.flops_6nd
    # Branching leaves the main run untouched.
    assert branched.val_loss == pytest.approx(plain.val_loss, abs=1e-6)


_CHILD = """
import json, sys, time
from scalinglab.train.trainer import TrainConfig, train
cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
train(cfg, checkpoint_dir=sys.argv[2], on_progress=lambda p: time.sleep(0.4))
"""


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_curve(tmp_path):
    cfg = tiny_config(tokens=60 * 8 * 32)
    ckpt_dir = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(cfg.to_dict()), str(ckpt_dir)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    ckpt = ckpt_dir / CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert child.poll() is None, "the child ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    state = torch.load(ckpt, weights_only=True)
    assert not state["done"] and 0 < state["step"] < cfg.total_steps  # killed mid-run

    resumed = train(cfg, checkpoint_dir=ckpt_dir)
    uninterrupted = train(cfg)
    assert [p.tokens for p in resumed.curve] == [p.tokens for p in uninterrupted.curve]
    for a, b in zip(resumed.curve, uninterrupted.curve, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-5)
        assert (a.val_loss is None) == (b.val_loss is None)
        if a.val_loss is not None:
            assert a.val_loss == pytest.approx(b.val_loss, abs=1e-5)
    assert resumed.val_loss == pytest.approx(uninterrupted.val_loss, abs=1e-5)

    # A finished run's checkpoint answers again without training; another config is refused.
    again = train(cfg, checkpoint_dir=ckpt_dir)
    assert again == resumed
    with pytest.raises(ValueError, match="different config"):
        train(tiny_config(tokens=30 * 8 * 32), checkpoint_dir=ckpt_dir)


@pytest.mark.slow
def test_synthetic_loss_approaches_the_true_entropy_rate_from_above():
    # A bigram source over 64 symbols with 6 successors each: H ≈ 1.49 nats against
    # log 64 ≈ 4.16 for a unigram guess. A 2-layer model has ample capacity for it.
    name = "synthetic:order=1,alphabet=64"
    entropy = parse_synthetic(name).entropy_rate_nats
    cfg = TrainConfig(
        TransformerShape(2, 64, 4, 64, 64),
        tokens=400 * 32 * 64,
        corpus=name,
        batch_size=32,
        lr=3e-3,
        eval_tokens=1 << 16,
        threads=1,
    )
    r = train(cfg)
    val = [p.val_loss for p in r.curve if p.val_loss is not None]
    assert r.val_loss <= 1.05 * entropy  # within 5 % above the truth
    assert min(val) >= entropy  # and never below it
