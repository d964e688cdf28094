"""Device, precision and peak-throughput choices for training.

- CPU is the default device; CUDA is used only when asked for (``device="cuda"``).
- ``precision="auto"`` picks bf16 autocast where the hardware computes in bf16 natively: on
  CUDA when the GPU supports bf16, on CPU when it has AVX512-BF16 or AMX and a cached matmul
  probe finds bf16 at least 1.5× faster than fp32 there. On this project's
  reference CPU (Zen 5, AVX512-BF16) bf16 matmuls run ≈ 4× fp32 and a training step of
  nanoGPT's small model took 22.9 ms against 28.0 ms, 309.6 against 778.2 ms at 10.6 M
  parameters (../shared/data/cpu_baselines/baselines.json). A CPU without those units
  emulates bf16 and runs far slower than fp32 (we measured ≈ 1 s against 65 ms per step of the
  small model on an AVX2-only Zen 3), so auto keeps fp32 there. Weights, optimizer state and
  the loss stay fp32 under autocast.
- MFU divides achieved model FLOP/s by the device's *measured* peak: torch's best matmul rate on
  CPU (:func:`scalinglab.units.measured_cpu_peak_flops`, cached per machine), and the data-sheet
  dense bf16 peak for known GPUs (A100, H100, H200) or a measured bf16 matmul rate otherwise.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

__all__ = ["PRECISIONS", "Runtime", "cpu_has_native_bf16", "resolve_runtime"]

PRECISIONS = ("auto", "fp32", "bf16")


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
        ``"fp32"`` or ``"bf16"`` (bf16 = autocast; weights stay fp32).
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
        """The autocast context for forward passes."""
        return torch.autocast(
            self.device_type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )


def default_threads() -> int:
    """Torch's default (physical cores), capped by the CPUs this process may run on."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), allowed))


def resolve_runtime(
    device: str = "cpu", precision: str = "auto", threads: int | None = None
) -> Runtime:
    """Check the request against this machine and fill in precision, threads and peak.

    Sets torch's thread count as a side effect (the trainer restores it afterwards).

    Raises
    ------
    ValueError
        For an unknown precision or device, or CUDA asked for where there is none.
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
    from scalinglab.units import measured_cpu_peak_flops

    native = cpu_has_native_bf16()
    if precision == "auto":
        # Measured, not assumed (both probes are cached per machine): bf16 where this CPU has
        # bf16 units and its bf16 matmuls beat fp32 by 1.5× or more. On the reference Zen 5
        # they run 4.3× faster (946 against 217.5 GFLOP/s) yet the small model's step gains
        # only 1.22×, so casts eat much of the difference; a smaller edge is not worth it.
        precision = "fp32"
        if native:
            bf16 = measured_cpu_peak_flops("bf16", threads=n_threads)
            if bf16 >= 1.5 * measured_cpu_peak_flops("fp32", threads=n_threads):
                precision = "bf16"

    # Without bf16 units, bf16 is emulated on the fp32 pipes: fp32's peak is the fair yardstick
    # (and probing emulated bf16 would take minutes).
    peak_precision = "bf16" if precision == "bf16" and native else "fp32"
    peak = measured_cpu_peak_flops(peak_precision, threads=n_threads)
    return Runtime("cpu", precision, n_threads, peak, f"{_cpu_name()} ({n_threads} threads)")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


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
