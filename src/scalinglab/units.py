"""Compute in every unit a planner quotes: FLOP, PF-day, accelerator-hour, kWh and money.

One PF-day is 10^15 FLOP/s sustained for a day: 8.64·10^19 FLOP (Brown et al. 2020 quote
GPT-3's 3.14·10^23 FLOP as 3 640 PF-days). Accelerator-hours follow from a device's dense
peak and the model FLOP utilisation (MFU) a run achieves; energy from board power, hours and
the data centre's PUE; money from a price per accelerator-hour.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalinglab.errors import ScalingLabError

__all__ = [
    "HARDWARE",
    "HARDWARE_CHOICES",
    "PF_DAY_FLOPS",
    "ComputeCost",
    "Hardware",
    "UnitError",
    "cached_measurement",
    "compute_cost",
    "cpu_model",
    "flops_from_budget",
    "flops_to_pf_days",
    "get_hardware",
    "machine_ident",
    "measured_cpu_peak_flops",
    "pf_days_to_flops",
]

PF_DAY_FLOPS = 1e15 * 86_400.0
BUDGET_UNITS = ("flops", "pf-days", "gpu-hours", "usd")


class UnitError(ScalingLabError):
    """A unit, hardware name or utilisation that scalinglab cannot interpret.

    ``field`` names the argument at fault: ``"gpu"``, ``"mfu"``, ``"unit"``, ``"value"``, ...
    """


@dataclass(frozen=True)
class Hardware:
    """An accelerator preset.

    Attributes
    ----------
    name
        Preset key, e.g. ``"h100-sxm"``.
    peak_flops
        Dense (no sparsity) peak in FLOP/s for the precision training uses (bf16 on GPUs).
    board_power_watts
        Maximum board power; ``None`` where no data sheet gives it (a CPU we only probed).
    memory_gib
        Device memory.
    source
        Where the figures come from.
    """

    name: str
    peak_flops: float
    board_power_watts: float | None
    memory_gib: float
    source: str


HARDWARE: dict[str, Hardware] = {
    # NVIDIA A100 Tensor Core GPU data sheet (2021): BF16 312 TFLOPS dense, 80 GB SXM, 400 W TDP.
    "a100-80gb": Hardware("a100-80gb", 312e12, 400.0, 80.0, "NVIDIA A100 data sheet (SXM)"),
    # NVIDIA H100 data sheet: BF16 1 979 TFLOPS *with sparsity* on SXM = 989.4 dense; ≤ 700 W.
    "h100-sxm": Hardware("h100-sxm", 989.4e12, 700.0, 80.0, "NVIDIA H100 data sheet (SXM)"),
    # NVIDIA H200 data sheet: BF16 peak as H100 SXM (1 979 sparse), 141 GB, ≤ 700 W.
    "h200": Hardware("h200", 989.4e12, 700.0, 141.0, "NVIDIA H200 data sheet (SXM)"),
}
_ALIASES = {"a100": "a100-80gb", "a100-sxm": "a100-80gb", "h100": "h100-sxm", "h200-sxm": "h200"}
# Every name get_hardware accepts besides aliases: the presets, and this machine's CPU (probed).
HARDWARE_CHOICES = (*HARDWARE, "cpu")


def flops_to_pf_days(flops: float) -> float:
    """Convert FLOP to PF-days (1 PF-day = 8.64·10^19 FLOP)."""
    return flops / PF_DAY_FLOPS


def pf_days_to_flops(pf_days: float) -> float:
    """Convert PF-days to FLOP."""
    return pf_days * PF_DAY_FLOPS


def get_hardware(name: str) -> Hardware:
    """Return the preset called ``name`` (case-insensitive; ``"cpu"`` probes this machine).

    Raises
    ------
    UnitError
        If no preset has that name; the message lists the known ones.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key == "cpu":
        return Hardware("cpu", measured_cpu_peak_flops("fp32"), None, _memory_gib(), "matmul probe")
    if key not in HARDWARE:
        known = ", ".join(HARDWARE_CHOICES)
        raise UnitError(f"unknown GPU {name!r}; known: {known}", field="gpu")
    return HARDWARE[key]


def _check_mfu(mfu: float) -> None:
    if not (math.isfinite(mfu) and 0 < mfu <= 1):
        raise UnitError(f"MFU must be in (0, 1], got {mfu!r}", field="mfu")


@dataclass(frozen=True)
class ComputeCost:
    """A FLOP budget expressed in every unit, on ``count`` devices of one kind.

    ``energy_kwh`` is ``None`` when the hardware has no board power, ``cost`` when no price
    was given.
    """

    flops: float
    pf_days: float
    gpu: str
    mfu: float
    count: int
    gpu_hours: float
    wall_days: float
    energy_kwh: float | None
    pue: float
    price_per_gpu_hour: float | None
    cost: float | None

    def to_dict(self) -> dict[str, float | str | int | None]:
        """Plain JSON-ready mapping."""
        return dict(self.__dict__)


def compute_cost(
    flops: float,
    *,
    gpu: str | Hardware = "h100-sxm",
    mfu: float = 0.4,
    count: int = 1,
    price_per_gpu_hour: float | None = None,
    pue: float = 1.0,
) -> ComputeCost:
    """Express ``flops`` as PF-days, accelerator-hours, wall-clock days, energy and cost.

    Parameters
    ----------
    flops
        Training compute in FLOP.
    gpu
        A preset name (see :data:`HARDWARE`) or a :class:`Hardware`.
    mfu
        Model FLOP utilisation in (0, 1]; 0.4 is typical of well-tuned large dense runs.
    count
        Devices working in parallel; sets the wall-clock days.
    price_per_gpu_hour
        Price of one device-hour in your currency; ``None`` leaves ``cost`` unset.
    pue
        Power usage effectiveness of the data centre (≥ 1); multiplies board energy.

    Examples
    --------
    >>> round(compute_cost(3.15e23, gpu="a100-80gb", mfu=0.5).gpu_hours)
    560897
    """
    if not (math.isfinite(flops) and flops > 0):
        raise UnitError(f"FLOPs must be a finite number > 0, got {flops!r}", field="flops")
    _check_mfu(mfu)
    if count < 1:
        raise UnitError(f"count must be ≥ 1, got {count!r}", field="count")
    if not (math.isfinite(pue) and pue >= 1):
        raise UnitError(f"PUE must be ≥ 1, got {pue!r}", field="pue")
    if price_per_gpu_hour is not None and not (
        math.isfinite(price_per_gpu_hour) and price_per_gpu_hour >= 0
    ):
        raise UnitError(
            f"price per GPU-hour must be ≥ 0, got {price_per_gpu_hour!r}",
            field="price_per_gpu_hour",
        )
    hw = gpu if isinstance(gpu, Hardware) else get_hardware(gpu)
    gpu_hours = flops / (hw.peak_flops * mfu) / 3600.0
    energy = None if hw.board_power_watts is None else gpu_hours * hw.board_power_watts * pue / 1e3
    cost = None if price_per_gpu_hour is None else gpu_hours * price_per_gpu_hour
    return ComputeCost(
        flops=flops,
        pf_days=flops_to_pf_days(flops),
        gpu=hw.name,
        mfu=mfu,
        count=count,
        gpu_hours=gpu_hours,
        wall_days=gpu_hours / count / 24.0,
        energy_kwh=energy,
        pue=pue,
        price_per_gpu_hour=price_per_gpu_hour,
        cost=cost,
    )


def flops_from_budget(
    value: float,
    unit: str = "flops",
    *,
    gpu: str | Hardware = "h100-sxm",
    mfu: float = 0.4,
    price_per_gpu_hour: float | None = None,
) -> float:
    """Convert a budget quoted in ``unit`` to FLOP.

    Parameters
    ----------
    value
        The budget.
    unit
        ``"flops"``, ``"pf-days"``, ``"gpu-hours"`` (on ``gpu`` at ``mfu``) or ``"usd"``
        (needs ``price_per_gpu_hour``).

    Raises
    ------
    UnitError
        For a non-positive budget, an unknown unit, or money without a price.
    """
    if not (math.isfinite(value) and value > 0):
        raise UnitError(f"budget must be a finite number > 0, got {value!r}", field="value")
    unit = unit.strip().lower().replace("_", "-")
    if unit == "flops":
        return value
    if unit == "pf-days":
        return pf_days_to_flops(value)
    if unit not in BUDGET_UNITS:
        raise UnitError(f"unknown unit {unit!r}; allowed: {', '.join(BUDGET_UNITS)}", field="unit")
    _check_mfu(mfu)
    hw = gpu if isinstance(gpu, Hardware) else get_hardware(gpu)
    if unit == "usd":
        if not price_per_gpu_hour:
            raise UnitError(
                "a budget in usd needs a price per GPU-hour", field="price_per_gpu_hour"
            )
        value = value / price_per_gpu_hour
    return value * 3600.0 * hw.peak_flops * mfu


# --- this machine's CPU peak -------------------------------------------------------------
# No data sheet describes a cloud vCPU, so we measure: the best torch matmul throughput over a
# few sizes, cached per machine (CPU model, core count, torch version) because it takes ~1 s.


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return float("nan")


def cpu_model() -> str:
    """This CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def machine_ident() -> str:
    """What a cached measurement of this machine depends on: CPU model, core count, torch."""
    import torch  # only the probes, which need torch anyway, call this

    return f"{cpu_model()}|{os.cpu_count()}|{torch.__version__}"


def cached_measurement(
    filename: str, ident: str, measure: Callable[[], Any], *, refresh: bool = False
) -> Any:
    """Return the JSON-able result of ``measure()`` for ``ident``, measuring only once.

    Results live in ``$SCALINGLAB_CACHE/filename`` (default ``~/.cache/scalinglab``), keyed by
    a hash of ``ident``, which must name everything the measurement depends on (see
    :func:`machine_ident`). The file is replaced atomically, so concurrent workers at worst
    measure twice; a damaged file is only a cache and is measured over.
    """
    root = os.environ.get("SCALINGLAB_CACHE") or Path.home() / ".cache" / "scalinglab"
    path = Path(root) / filename
    key = hashlib.sha1(ident.encode()).hexdigest()[:20]

    def read() -> dict[str, Any]:
        try:
            cache = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError):
            return {}
        return cache if isinstance(cache, dict) else {}

    entry = read().get(key)
    # An entry of another shape (an older release's, a hand edit) is only a stale cache.
    if not refresh and isinstance(entry, dict) and "value" in entry:
        return entry["value"]
    value = measure()
    cache = read()  # again: another process may have added entries meanwhile
    cache[key] = {"value": value, "ident": ident}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, path)
    return value


def measured_cpu_peak_flops(
    precision: str = "fp32", *, threads: int | None = None, refresh: bool = False
) -> float:
    """Peak matmul FLOP/s of this CPU in ``precision`` ("fp32" or "bf16"), probed and cached.

    Parameters
    ----------
    precision
        ``"fp32"`` or ``"bf16"``.
    threads
        Torch threads to probe with; ``None`` uses torch's current setting.
    refresh
        Ignore the cache and probe again.
    """
    import torch  # imported here: the calculator must not pay for torch unless it probes

    if precision not in ("fp32", "bf16"):
        raise UnitError(f"precision must be 'fp32' or 'bf16', got {precision!r}", field="precision")
    threads = threads or torch.get_num_threads()
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16

    def probe() -> float:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        best = 0.0
        try:
            for size in (512, 1024, 2048):
                a = torch.randn(size, size, dtype=dtype)
                b = torch.randn(size, size, dtype=dtype)
                torch.mm(a, b)  # warm-up: first call allocates and picks kernels
                reps = max(2, int(2e9 / (2 * size**3)))
                start = time.perf_counter()
                for _ in range(reps):
                    torch.mm(a, b)
                elapsed = time.perf_counter() - start
                best = max(best, 2 * size**3 * reps / elapsed)
        finally:
            torch.set_num_threads(previous)
        return best

    ident = f"{machine_ident()}|{threads}|{precision}"
    return float(cached_measurement("cpu_peak.json", ident, probe, refresh=refresh))
