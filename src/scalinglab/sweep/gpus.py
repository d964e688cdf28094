"""The GPUs a sweep may use, cut into per-run slots; the variables that set a run's threads.

No torch import: a driver of command runs needs none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

from scalinglab.sweep.spec_values import SpecError

__all__ = ["THREAD_VARIABLES", "gpu_slots", "visible_gpus"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi``'s."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [part.strip() for part in listed.split(",") if part.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        out = []
        for gpu in ids:
            if gpu.startswith("-"):
                break
            out.append(gpu)
        return out
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        found = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in found.stdout.splitlines() if line.strip()]


def gpu_slots(
    workers: int, gpus_per_run: int, environ: Mapping[str, str] | None = None
) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` values for ``workers`` runs of ``gpus_per_run`` GPUs each.

    Raises
    ------
    SpecError
        Fewer visible GPUs than ``workers`` × ``gpus_per_run``.
    """
    ids = visible_gpus(environ)
    need = workers * gpus_per_run
    if len(ids) < need:
        raise SpecError(
            f"execution.gpus_per_run: {workers} worker(s) × {gpus_per_run} GPU(s) need {need} "
            f"GPUs, but this machine shows {len(ids)}; lower --workers or gpus_per_run",
            field="execution.gpus_per_run",
        )
    return [",".join(ids[i * gpus_per_run : (i + 1) * gpus_per_run]) for i in range(workers)]
