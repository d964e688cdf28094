"""Device, precision and peak-throughput choices for training.

- CPU is the default device; CUDA is used only when asked for (``device="cuda"``).
- Precisions: ``fp32``; ``bf16``, autocast (weights, optimizer state and the loss stay fp32);
  and, on CPU only, ``bf16-matmul``: every tensor stays fp32 and oneDNN computes the matmuls
  from bf16 inputs with fp32 accumulation (the CPU's analogue of TF32 on a GPU), which spares
  autocast's cast kernels around every layer.
- ``precision="auto"`` picks bf16 on CUDA when the GPU supports it. On a CPU with bf16 units
  (AVX512-BF16 or AMX) it *measures*: a few training steps of the run's own model at each
  precision, cached per machine and workload (:func:`fastest_cpu_precision`), and keeps fp32
  unless another is at least 5% faster. A matmul probe alone misleads here: on this project's
  reference CPU (Zen 5, AVX512-BF16) bf16 matmuls run ≈ 4.3× fp32, yet a step of nanoGPT's
  small model took 22.9 ms under autocast against 28.0 ms in fp32, and 309.6 against 778.2 ms
  at 10.6 M parameters (../shared/data/cpu_baselines/baselines.json). Without a step to time
  (:func:`resolve_runtime` called alone), auto falls back to that matmul probe, taking bf16 at
  ≥ 1.5×. A CPU without bf16 units emulates bf16 far slower than fp32 (≈ 1 s against 65 ms
  per step of the small model on an AVX2-only Zen 3), so auto keeps fp32 there.
- MFU divides achieved model FLOP/s by the device's *measured* peak: torch's best matmul rate on
  CPU (:func:`scalinglab.units.measured_cpu_peak_flops`, cached per machine), and the data-sheet
  dense bf16 peak for known GPUs (A100, H100, H200) or a measured bf16 matmul rate otherwise.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from scalinglab.train.config import PRECISIONS
from scalinglab.units import (
    cached_measurement,
    cpu_model,
    machine_ident,
    measured_cpu_peak_flops,
)

__all__ = [
    "PRECISIONS",
    "Runtime",
    "cpu_has_native_bf16",
    "default_threads",
    "fastest_cpu_precision",
    "resolve_runtime",
]

CPU_CANDIDATES = ("fp32", "bf16", "bf16-matmul")  # what auto times on a CPU with bf16 units
MIN_GAIN = 1.05  # below this a short timing cannot tell a gain from noise: keep fp32


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 dot-product units (AVX512-BF16 or AMX tiles)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


@dataclass(frozen=True)
class Runtime:
    """Where and how a run computes.

    Attributes
    ----------
    device
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"`` etc. also accepted on input).
    precision
        ``"fp32"``, ``"bf16"`` (autocast) or ``"bf16-matmul"`` (CPU, oneDNN).
    threads
        Torch intra-op threads (CPU).
    peak_flops
        The measured or data-sheet peak FLOP/s that MFU divides by.
    device_name
        Human-readable device, e.g. the CPU model or ``torch.cuda.get_device_name``.
    """

    device: str
    precision: str
    threads: int
    peak_flops: float
    device_name: str

    @property
    def device_type(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return self.device.split(":")[0]

    def autocast(self) -> torch.autocast:
        """The autocast context for forward passes (entered in every thread that runs one)."""
        return torch.autocast(
            self.device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    @contextlib.contextmanager
    def matmul_precision(self) -> Iterator[None]:
        """oneDNN's fp32 matmul precision for ``bf16-matmul``, restored on exit.

        The setting is process-wide (it covers the data-parallel worker threads too), so the
        trainer holds it around its steps and evaluations only.
        """
        if self.precision != "bf16-matmul":
            yield
            return
        matmul = torch.backends.mkldnn.matmul
        previous = matmul.fp32_precision
        matmul.fp32_precision = "bf16"
        try:
            yield
        finally:
            matmul.fp32_precision = previous


def default_threads() -> int:
    """Torch's default (physical cores), capped by the CPUs this process may run on."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), allowed))


def fastest_cpu_precision(
    step_seconds: Callable[[str], float], workload: str, threads: int, *, refresh: bool = False
) -> str:
    """The precision whose training step this CPU runs fastest, measured once and cached.

    Parameters
    ----------
    step_seconds
        Seconds per training step of the workload at a precision (``CPU_CANDIDATES``).
    workload
        Everything the step time depends on beyond the machine (model shape, batch, how the
        step is split over cores): the cache key, with :func:`scalinglab.units.machine_ident`
        and ``threads``.
    threads
        Torch threads the steps run with.
    refresh
        Measure again even if cached.

    Returns
    -------
    str
        ``"fp32"`` unless another candidate is at least ``MIN_GAIN`` times faster.
    """
    ident = f"{machine_ident()}|{threads}|{workload}"
    seconds = cached_measurement(
        "cpu_precision.json",
        ident,
        lambda: {p: step_seconds(p) for p in CPU_CANDIDATES},
        refresh=refresh,
    )
    best = min(seconds, key=seconds.get)
    return best if seconds["fp32"] >= MIN_GAIN * seconds[best] else "fp32"


def resolve_runtime(
    device: str = "cpu",
    precision: str = "auto",
    threads: int | None = None,
    *,
    step_seconds: Callable[[str], float] | None = None,
    workload: str = "",
) -> Runtime:
    """Check the request against this machine and fill in precision, threads and peak.

    Sets torch's thread count as a side effect (the trainer restores it afterwards).

    Parameters
    ----------
    device, precision, threads
        As asked for; ``precision="auto"`` and ``threads=None`` are resolved here.
    step_seconds, workload
        For ``auto`` on a CPU with bf16 units: time a training step at a precision, and what
        the timing depends on (see :func:`fastest_cpu_precision`). Without them, auto follows
        the cached matmul probe.

    Raises
    ------
    ValueError
        For an unknown precision or device, CUDA asked for where there is none, or
        ``bf16-matmul`` where it cannot apply (CUDA, or a CPU without bf16 units).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads!r}")
    n_threads = threads or default_threads()
    torch.set_num_threads(n_threads)
    if kind == "cuda":
        if precision == "bf16-matmul":
            raise ValueError(
                "precision 'bf16-matmul' is a CPU mode; on CUDA, fp32 matmuls already use TF32"
            )
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU")
        index = torch.device(device).index or 0
        name = torch.cuda.get_device_name(index)
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        # TF32 for whatever stays fp32 (nanoGPT does the same); bf16 matmuls are unaffected.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return Runtime(device, precision, n_threads, _cuda_peak(name, precision, index), name)
    native = cpu_has_native_bf16()
    if precision == "bf16-matmul" and not native:
        raise ValueError(
            "precision 'bf16-matmul' needs a CPU with bf16 units (AVX512-BF16 or AMX): "
            "elsewhere oneDNN computes fp32 anyway"
        )
    if precision == "auto":
        precision = "fp32"
        if native and step_seconds is not None:
            precision = fastest_cpu_precision(step_seconds, workload, n_threads)
        elif native:
            bf16 = measured_cpu_peak_flops("bf16", threads=n_threads)
            if bf16 >= 1.5 * measured_cpu_peak_flops("fp32", threads=n_threads):
                precision = "bf16"

    # Without bf16 units, bf16 is emulated on the fp32 pipes: fp32's peak is the fair yardstick
    # (and probing emulated bf16 would take minutes).
    peak_precision = "bf16" if precision != "fp32" and native else "fp32"
    peak = measured_cpu_peak_flops(peak_precision, threads=n_threads)
    return Runtime("cpu", precision, n_threads, peak, f"{cpu_model()} ({n_threads} threads)")


# Dense (no sparsity) peaks from the data sheets, as in scalinglab.units.HARDWARE.
_GPU_PEAKS = {"H200": "h200", "H100": "h100-sxm", "A100": "a100-80gb"}


def _cuda_peak(name: str, precision: str, index: int) -> float:
    from scalinglab.units import HARDWARE

    upper = name.upper()
    # PCIe and NVL boards of the H-series run lower clocks than the SXM data-sheet figure.
    if precision == "bf16" and not ("H1" in upper and "PCIE" in upper) and "NVL" not in upper:
        for marker, key in _GPU_PEAKS.items():
            if marker in upper:
                return HARDWARE[key].peak_flops
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return _measure_cuda_matmul(dtype, index)


def _measure_cuda_matmul(dtype: torch.dtype, index: int, size: int = 8192) -> float:
    """Best-of-three rate of a size³ matmul: the peak for GPUs without a data-sheet entry."""
    dev = torch.device("cuda", index)
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    torch.mm(a, b)
    torch.cuda.synchronize(dev)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b)
        torch.cuda.synchronize(dev)
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * size**3 / best
