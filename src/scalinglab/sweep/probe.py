"""The throughput probe: a few optimiser steps of the smallest and largest planned models,
timed on this machine and cached, as the :class:`~scalinglab.sweep.budget.ThroughputModel` that
wall-clock budgets and estimates need."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from scalinglab._optional import require
from scalinglab.sweep.backends import TrainFn, result_dict
from scalinglab.sweep.budget import ThroughputModel
from scalinglab.sweep.runspec import RunSpec
from scalinglab.units import cached_measurement, machine_ident

__all__ = ["PROBE_STEPS", "measure_throughput"]


PROBE_STEPS = 8


def measure_throughput(
    runs: Sequence[RunSpec],
    *,
    threads: int,
    steps: int = PROBE_STEPS,
    train_fn: TrainFn | None = None,
    refresh: bool = False,
) -> ThroughputModel:
    """Time a few training steps of the smallest and largest planned models, cached.

    The probe trains in this process with ``threads`` torch threads, the way a worker will,
    on the runs' own device, corpus and batch size. Results are cached per machine, torch
    version, thread count and config (under ``$SCALINGLAB_CACHE``), so planning twice costs
    nothing.

    Parameters
    ----------
    runs
        The planned runs (at least one).
    threads
        Torch threads each worker will use.
    steps
        Optimiser steps per probe; the first is discarded as warm-up when the trainer
        reports per-point wall times.
    train_fn
        The training function (default: the real trainer).
    refresh
        Ignore the cache.
    """
    from scalinglab.counting import flops_per_token
    from scalinglab.train.config import TrainConfig

    if train_fn is None:
        require("torch", "measuring training throughput")
        from scalinglab.train.trainer import train as train_fn
    if not runs:
        raise ValueError("no runs to probe")
    ordered = sorted(runs, key=lambda r: flops_per_token(r.shape).per_operation)
    probes = [ordered[0]] if len(ordered) == 1 else [ordered[0], ordered[-1]]
    device = str(probes[0].config_dict.get("device", "cpu"))
    xs, ys = [], []
    for run in probes:
        config = run.config_dict
        step_tokens = int(config["batch_size"]) * run.shape.context_length
        # Evaluate once, at the end, on one batch, and log every step: the curve's wall times
        # then time the training steps alone, and the first (warm-up) step can be dropped.
        config.update(
            tokens=steps * step_tokens,
            threads=threads,
            branch_tokens=[],
            eval_interval_tokens=steps * step_tokens,
            eval_tokens=step_tokens,
            log_interval_tokens=step_tokens,
            warmup_tokens=0,
        )
        ident = f"{machine_ident()}|{device}|{threads}|{json.dumps(config, sort_keys=True)}"

        def probe(config: dict[str, Any] = config, step_tokens: int = step_tokens) -> float:
            result = result_dict(train_fn(TrainConfig.from_dict(config)))
            return _probe_speed(result, step_tokens)

        speed = cached_measurement("sweep_throughput.json", ident, probe, refresh=refresh)
        xs.append(float(flops_per_token(run.shape).per_operation))
        ys.append(float(speed))
    if len(xs) == 2 and xs[0] == xs[1]:
        xs, ys = xs[:1], [max(ys)]
    return ThroughputModel(tuple(xs), tuple(ys), device=device, threads=threads)


def _probe_speed(result: Mapping[str, Any], step_tokens: int) -> float:
    """Tokens per second of a probe run, excluding the first step when the curve allows."""
    curve = list(result.get("curve") or ())
    timed = [p for p in curve if p.get("wall_s") is not None]
    if len(timed) >= 2:
        first, last = timed[0], timed[-1]
        dt = float(last["wall_s"]) - float(first["wall_s"])
        dn = int(last["tokens"]) - int(first["tokens"])
        if dt > 0 and dn > 0:
            return dn / dt
    speed = float(result.get("tokens_per_s") or 0.0)
    if not math.isfinite(speed) or speed <= 0:
        wall = float(result.get("wall_s") or 0.0)
        speed = float(result.get("tokens", 0)) / wall if wall > 0 else float("nan")
    return speed
