import json
import math

import pytest

from scalinglab.units import (
    PF_DAY_FLOPS,
    UnitError,
    cached_measurement,
    compute_cost,
    flops_from_budget,
    flops_to_pf_days,
    get_hardware,
    measured_cpu_peak_flops,
)


def test_pf_day_definition():
    assert PF_DAY_FLOPS == 8.64e19  # 10^15 FLOP/s × 86 400 s


def test_gpt3_pf_days_published():
    # Brown et al. 2020, Table D.1: GPT-3 175B used 3.14e23 FLOP = 3.64e3 PF-days.
    assert flops_to_pf_days(3.14e23) == pytest.approx(3640, rel=0.005)
    # 6·N·D with N = 175e9, D = 300e9 gives 3.15e23, i.e. 3 646 PF-days.
    assert flops_to_pf_days(6 * 175e9 * 300e9) == pytest.approx(3646, rel=0.001)


def test_gpu_hours_energy_cost_are_consistent():
    h100 = get_hardware("H100")
    cost = compute_cost(1e24, gpu="h100-sxm", mfu=0.5, count=1000, price_per_gpu_hour=2.5, pue=1.2)
    hours = 1e24 / (h100.peak_flops * 0.5) / 3600
    assert cost.gpu_hours == pytest.approx(hours)
    assert cost.wall_days == pytest.approx(hours / 1000 / 24)
    assert cost.energy_kwh == pytest.approx(hours * 700 * 1.2 / 1000)
    assert cost.cost == pytest.approx(hours * 2.5)


def test_budget_units_round_trip():
    flops = flops_from_budget(2000, "gpu-hours", gpu="a100-80gb", mfu=0.4)
    assert compute_cost(flops, gpu="a100-80gb", mfu=0.4).gpu_hours == pytest.approx(2000)
    usd = flops_from_budget(5000, "usd", gpu="a100-80gb", mfu=0.4, price_per_gpu_hour=2.5)
    assert usd == pytest.approx(flops)
    assert flops_from_budget(1, "pf-days") == PF_DAY_FLOPS


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: flops_from_budget(-1), "budget"),
        (lambda: flops_from_budget(math.nan), "budget"),
        (lambda: flops_from_budget(1, "joules"), "unknown unit"),
        (lambda: flops_from_budget(1, "usd", gpu="h100"), "price"),
        (lambda: compute_cost(1e20, mfu=0), "MFU"),
        (lambda: compute_cost(1e20, mfu=1.5), "MFU"),
        (lambda: compute_cost(1e20, gpu="tpu-v9"), "unknown GPU"),
        (lambda: compute_cost(0), "FLOPs"),
    ],
)
def test_bad_input_is_refused_with_a_reason(call, message):
    with pytest.raises(UnitError, match=message):
        call()


def test_cpu_probe_is_positive_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path))
    first = measured_cpu_peak_flops("fp32", threads=1)
    assert first > 1e8  # any CPU of the last 20 years multiplies faster than 0.1 GFLOP/s
    assert (tmp_path / "cpu_peak.json").exists()
    assert measured_cpu_peak_flops("fp32", threads=1) == first  # served from the cache


def test_a_cache_measures_once_and_over_whatever_it_cannot_read(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path))
    calls = []

    def measure():
        calls.append(1)
        return {"seconds": 1.5}

    assert cached_measurement("probe.json", "this machine", measure) == {"seconds": 1.5}
    assert cached_measurement("probe.json", "this machine", measure) == {"seconds": 1.5}
    assert len(calls) == 1
    assert cached_measurement("probe.json", "this machine", measure, refresh=True)
    assert len(calls) == 2
    path = tmp_path / "probe.json"
    (key,) = json.loads(path.read_text())
    # An older release's entry under the same key, a damaged file, a file of another shape:
    for text in (json.dumps({key: {"tokens_per_s": 3.0}}), "{not json", "[1, 2]"):
        path.write_text(text)
        assert cached_measurement("probe.json", "this machine", measure) == {"seconds": 1.5}
    assert len(calls) == 5
