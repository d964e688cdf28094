"""Device and precision choice: the measured auto precision, bf16-matmul, its refusals."""

from __future__ import annotations

import json

import pytest
import torch

import scalinglab.train.device as device
from scalinglab.counting import TransformerShape
from scalinglab.train.device import (
    CPU_CANDIDATES,
    MIN_GAIN,
    Runtime,
    fastest_cpu_precision,
    resolve_runtime,
)
from scalinglab.train.trainer import PROBE_MIN_STEPS, TrainConfig, train


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture()
def bf16_cpu(monkeypatch):
    """Pretend this CPU has bf16 units, with a fixed peak instead of (slow, emulated) probes."""
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(device, "measured_cpu_peak_flops", lambda precision, threads: 1e11)


@pytest.fixture(autouse=True)
def _keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def timer(seconds: dict[str, float], calls: list[str]):
    def step_seconds(precision: str) -> float:
        calls.append(precision)
        return seconds[precision]

    return step_seconds


def test_fastest_precision_needs_a_clear_gain_and_is_measured_once(fresh_cache):
    calls: list[str] = []
    slower = timer({"fp32": 1.0, "bf16": 0.97, "bf16-matmul": 1.2}, calls)
    # 3% is within a short timing's noise: fp32 stays.
    assert fastest_cpu_precision(slower, "model A", threads=2) == "fp32"
    assert sorted(calls) == sorted(CPU_CANDIDATES)
    assert fastest_cpu_precision(slower, "model A", threads=2) == "fp32"
    assert len(calls) == 3  # the second answer came from the cache

    faster = timer({"fp32": 1.0, "bf16": 0.8, "bf16-matmul": 0.6}, calls)
    assert fastest_cpu_precision(faster, "model B", threads=2) == "bf16-matmul"
    cached = json.loads((fresh_cache / "cpu_precision.json").read_text())
    assert len(cached) == 2
    assert {"model A", "model B"} == {v["ident"].rsplit("|", 1)[1] for v in cached.values()}


def test_auto_times_the_step_on_a_cpu_with_bf16_units(fresh_cache, bf16_cpu):
    calls: list[str] = []
    seconds = timer({"fp32": 1.0, "bf16": 0.7, "bf16-matmul": 0.8}, calls)
    rt = resolve_runtime("cpu", "auto", threads=1, step_seconds=seconds, workload="w")
    assert rt.precision == "bf16" and rt.threads == 1
    assert sorted(calls) == sorted(CPU_CANDIDATES)


def test_auto_keeps_fp32_without_bf16_units(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    calls: list[str] = []
    seconds = timer({"fp32": 1.0, "bf16": 0.1, "bf16-matmul": 0.1}, calls)
    rt = resolve_runtime("cpu", "auto", threads=1, step_seconds=seconds, workload="w")
    assert rt.precision == "fp32"
    assert calls == []  # emulated bf16 is never worth timing


def test_bf16_matmul_is_refused_where_it_cannot_apply(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="bf16 units"):
        resolve_runtime("cpu", "bf16-matmul", threads=1)
    with pytest.raises(ValueError, match="CPU mode"):
        resolve_runtime("cuda", "bf16-matmul")


def test_a_cuda_run_gets_bf16_autocast_and_the_data_sheet_peak(monkeypatch):
    """The CUDA path, on a machine without a GPU: torch's answers about the device are faked."""
    from scalinglab.units import HARDWARE

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    rt = resolve_runtime("cuda", "auto", threads=1)
    assert (rt.device_type, rt.precision) == ("cuda", "bf16")
    assert rt.peak_flops == HARDWARE["h100-sxm"].peak_flops
    autocast = rt.autocast()
    assert autocast.device == "cuda" and autocast.fast_dtype == torch.bfloat16
    # An older GPU: fp32, and MFU against its measured matmul rate (here a stand-in).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(device, "_measure_cuda_matmul", lambda dtype, index: 1.5e13)
    rt = resolve_runtime("cuda", "auto", threads=1)
    assert (rt.precision, rt.peak_flops) == ("fp32", 1.5e13)


def test_bf16_matmul_scope_sets_onednn_and_restores_it():
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision
    rt = Runtime("cpu", "bf16-matmul", 1, 1e11, "test")
    with rt.matmul_precision():
        assert matmul.fp32_precision == "bf16"
        assert not torch.is_autocast_enabled("cpu")  # tensors stay fp32
    assert matmul.fp32_precision == before
    with Runtime("cpu", "fp32", 1, 1e11, "test").matmul_precision():
        assert matmul.fp32_precision == before


def test_the_trainer_times_its_own_model_for_auto(fresh_cache, bf16_cpu):
    shape = TransformerShape(n_layer=1, d_model=16, n_head=2, vocab_size=65, context_length=16)
    config = TrainConfig(
        shape,
        tokens=PROBE_MIN_STEPS * 4 * 16,
        corpus="synthetic:order=1,alphabet=64",  # no reference data needed: runs in CI too
        batch_size=4,
        eval_tokens=256,
        threads=1,
        precision="auto",
    )
    result = train(config)
    assert result.precision in CPU_CANDIDATES
    (entry,) = json.loads((fresh_cache / "cpu_precision.json").read_text()).values()
    assert set(entry["value"]) == set(CPU_CANDIDATES)
    assert all(seconds > 0 for seconds in entry["value"].values())
    seconds = entry["value"]
    fastest = min(seconds, key=seconds.get)
    expected = fastest if seconds["fp32"] >= MIN_GAIN * seconds[fastest] else "fp32"
    assert result.precision == expected


def test_the_torch_free_list_of_precisions_agrees():
    from scalinglab.sweep.spec_tables import PRECISIONS as SPEC_PRECISIONS

    assert device.PRECISIONS == SPEC_PRECISIONS


def test_a_checkpoint_remembers_the_precision_for_its_resume(tmp_path):
    config = TrainConfig(
        TransformerShape(n_layer=1, d_model=16, n_head=2, vocab_size=65, context_length=16),
        tokens=20 * 4 * 16,
        corpus="synthetic:order=1,alphabet=64",  # no reference data needed: runs in CI too
        batch_size=4,
        eval_tokens=256,
        threads=1,
    )
    result = train(config, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["precision"] == result.precision
