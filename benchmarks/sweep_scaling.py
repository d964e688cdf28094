"""How sweeps scale with workers: local and Ray, 1 vs 2 one-thread workers, in one run.

Trains the same set of equal-size runs (one model, one length, different seeds) several ways
and prints wall times and ratios against anchors measured in this same run:

- local, 1 worker × 1 thread (the anchor) vs 2 workers × 1 thread: the issue asks ≥ 1.8×;
- local, 1 worker × 2 threads vs 2 workers × 1 thread: the issue quotes ≈ 1.3× for small
  models on a 2-core machine;
- Ray, 1 worker × 1 thread vs 2 workers × 1 thread (Ray's anchor is its own 1-worker time);
- Ray vs local: the same runs give the same losses (same seeds, same maths).

Usage::

    .venv/bin/python benchmarks/sweep_scaling.py [--runs 6] [--params 6e4] [--tokens 1e6]

Start-up (the local forkserver importing torch, ``ray.init`` and Ray's workers importing torch)
is timed once and printed apart; the configurations then run warm, as on a cluster already up.
Times are noisy on a shared machine: compare the ratios, and rerun when another job was busy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from scalinglab.store import Store, load_store_runs
from scalinglab.sweep.backends import available_cores
from scalinglab.sweep.budget import plan_sweep
from scalinglab.sweep.executors import default_ray_temp_dir, run_sweep
from scalinglab.sweep.spec import parse_spec

SPEC = """
[sweep]
name = "scaling-bench"
seed = {seed}
[data]
corpus = "stdlib"
[model]
context_length = 64
[train]
batch_size = 16
eval_tokens = 8192
[design]
kind = "grid"
params = [{params}]
tokens = [{tokens}]
"""


def equal_runs_plan(n_runs: int, params: float, tokens: float):
    """One plan holding ``n_runs`` runs of one size and length that differ only by seed."""
    plans = [
        plan_sweep(parse_spec(SPEC.format(seed=s, params=params, tokens=tokens)), workers=1)
        for s in range(n_runs)
    ]
    return dataclasses.replace(plans[0], runs=tuple(p.runs[0] for p in plans))


def timed(plan, folder: Path, label: str, **kwargs) -> tuple[float, Path]:
    path = folder / f"{label}.db"
    with Store(path) as store:
        start = time.perf_counter()
        summary = run_sweep(plan, store, **kwargs)
        wall = time.perf_counter() - start
    if not summary.complete:
        raise SystemExit(f"{label}: {len(summary.failed)} runs failed; see {path}")
    return wall, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="equal runs per configuration")
    parser.add_argument("--params", type=float, default=6e4, help="non-embedding N")
    parser.add_argument("--tokens", type=float, default=1e6, help="training tokens D")
    parser.add_argument("--skip-ray", action="store_true", help="local executor only")
    args = parser.parse_args()

    plan = equal_runs_plan(args.runs, args.params, args.tokens)
    warmup = equal_runs_plan(2, args.params, 5e4)
    run = plan.runs[0]
    print(
        f"{args.runs} runs of N={run.params:,} (non-embedding), D={run.tokens:,} tokens, "
        f"{run.flops:.3g} FLOP each; {available_cores()} cores"
    )
    configs = [
        ("local 1w×1t", dict(workers=1, threads=1)),
        ("local 2w×1t", dict(workers=2, threads=1)),
        ("local 1w×2t", dict(workers=1, threads=2)),
    ]
    walls: dict[str, float] = {}
    run_speed: dict[str, float] = {}
    losses: dict[str, pd.Series] = {}

    def measure(label: str, folder: Path, **kwargs) -> None:
        load_before = os.getloadavg()[0]
        walls[label], store_path = timed(plan, folder, label.replace(" ", "_"), **kwargs)
        runs = load_store_runs(store_path).set_index("point_id")
        losses[label] = runs["loss"]
        with sqlite3.connect(store_path) as db:
            speeds = [r[0] for r in db.execute("SELECT tokens_per_s FROM runs")]
        run_speed[label] = statistics.median(speeds)
        # The load average says whether other jobs shared the cores during the timing.
        print(
            f"{label:>12}: {walls[label]:7.1f} s, median run {run_speed[label]:8,.0f} tokens/s "
            f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="slbench-", dir="/tmp") as tmp:
        folder = Path(tmp)
        # Start-up is timed apart, then kept warm, so that the ratios compare the sweeps
        # themselves: the local forkserver (torch imported once) and a Ray instance (as a
        # cluster already running) with its two worker processes. Warm-up runs also build
        # the corpus cache and the CPU-peak probe that MFU needs. Ray starts only after the
        # local timings: its idle daemons take about 7% of a core, which would slow them.
        cold, _ = timed(warmup, folder, "warm_local", executor="local", workers=2, threads=1)
        print(f"local start-up and 2 tiny runs: {cold:.1f} s")
        for label, kwargs in configs:
            measure(label, folder, executor="local", **kwargs)
        if not args.skip_ray:
            import ray

            ray_dir = default_ray_temp_dir()
            start = time.perf_counter()
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _temp_dir=ray_dir,
            )
            try:
                print(f"ray.init: {time.perf_counter() - start:.1f} s")
                cold, _ = timed(warmup, folder, "warm_ray", executor="ray", workers=2, threads=1)
                print(f"ray worker start-up and 2 tiny runs: {cold:.1f} s")
                for label, kwargs in configs[:2]:
                    measure(label.replace("local", "ray"), folder, executor="ray", **kwargs)
            finally:
                ray.shutdown()
                shutil.rmtree(ray_dir, ignore_errors=True)

    print()
    # The ceiling set by the hardware: two busy cores each run slower than one alone (shared
    # caches, memory bandwidth, clocks). Twice the per-run speed ratio is what the executor
    # could reach at best; the gap to it is the executor's own overhead.
    for name in ["local"] + ([] if args.skip_ray else ["ray"]):
        one, two = f"{name} 1w×1t", f"{name} 2w×1t"
        print(f"{name + ':':6s} 2 workers vs 1 (1 thread each): {walls[one] / walls[two]:.2f}×")
        ceiling = 2 * run_speed[two] / run_speed[one]
        print(f"       per-run speed with 2 busy cores vs 1: ceiling {ceiling:.2f}×")
    print(
        "local: 2 one-thread workers vs 1 two-thread worker: "
        f"{walls['local 1w×2t'] / walls['local 2w×1t']:.2f}×"
    )
    if not args.skip_ray:
        print(f"ray vs local, 2 workers: {walls['local 2w×1t'] / walls['ray 2w×1t']:.2f}×")
    anchor = losses["local 1w×1t"]
    for label, series in losses.items():
        diff = (series.loc[anchor.index] - anchor).abs().max()
        print(f"max |loss - local 1w×1t| for {label}: {diff:.2e} nats")


if __name__ == "__main__":
    main()
