"""How sweeps scale with workers: local and Ray, 1 vs 2 one-thread workers, in one run.

Trains the same set of equal-size runs (one model, one length, different seeds) several ways
and prints wall times and ratios against anchors measured in this same run:

- local, 1 worker × 1 thread (the anchor) vs 2 workers × 1 thread: the issue asks ≥ 1.8×;
- local, 1 worker × 2 threads vs 2 workers × 1 thread: the issue quotes ≈ 1.3× for small
  models on a 2-core machine;
- Ray, 1 worker × 1 thread vs 2 workers × 1 thread (Ray's anchor is its own 1-worker time);
- Ray vs local: the same runs give the same losses (same seeds, same maths).

Usage::

    .venv/bin/python benchmarks/sweep_scaling.py [--runs 4] [--params 6e4] [--tokens 4e5]

Times are noisy on a shared machine: compare the ratios, and rerun when another job was busy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from scalinglab.sweep.design import plan_sweep
from scalinglab.sweep.executors import available_cores, run_sweep
from scalinglab.sweep.spec import parse_spec
from scalinglab.sweep.store import Store, load_store_runs

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
    parser.add_argument("--runs", type=int, default=4, help="equal runs per configuration")
    parser.add_argument("--params", type=float, default=6e4, help="non-embedding N")
    parser.add_argument("--tokens", type=float, default=4e5, help="training tokens D")
    parser.add_argument("--skip-ray", action="store_true", help="local executor only")
    args = parser.parse_args()

    plan = equal_runs_plan(args.runs, args.params, args.tokens)
    run = plan.runs[0]
    print(
        f"{args.runs} runs of N={run.params:,} (non-embedding), D={run.tokens:,} tokens, "
        f"{run.flops:.3g} FLOP each; {available_cores()} cores"
    )
    configs = [
        ("local 1w×1t", dict(executor="local", workers=1, threads=1)),
        ("local 2w×1t", dict(executor="local", workers=2, threads=1)),
        ("local 1w×2t", dict(executor="local", workers=1, threads=2)),
    ]
    if not args.skip_ray:
        configs += [
            ("ray 1w×1t", dict(executor="ray", workers=1, threads=1)),
            ("ray 2w×1t", dict(executor="ray", workers=2, threads=1)),
        ]
    walls: dict[str, float] = {}
    stores: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="slbench-", dir="/tmp") as tmp:
        folder = Path(tmp)
        for label, kwargs in configs:
            if kwargs["executor"] == "ray":
                kwargs["ray_temp_dir"] = folder / "ray"
            load_before = os.getloadavg()[0]
            walls[label], stores[label] = timed(plan, folder, label.replace(" ", "_"), **kwargs)
            # The load average says whether other jobs shared the cores during the timing.
            print(
                f"{label:>12}: {walls[label]:7.1f} s   (load average {load_before:.1f} before, "
                f"{os.getloadavg()[0]:.1f} after)",
                flush=True,
            )
        losses = {k: load_store_runs(p).set_index("point_id")["loss"] for k, p in stores.items()}

    print()
    print(
        f"local: 2 workers vs 1 (1 thread each): {walls['local 1w×1t'] / walls['local 2w×1t']:.2f}×"
    )
    print(
        "local: 2 one-thread workers vs 1 two-thread worker: "
        f"{walls['local 1w×2t'] / walls['local 2w×1t']:.2f}×"
    )
    if not args.skip_ray:
        print(
            f"ray:   2 workers vs 1 (1 thread each): {walls['ray 1w×1t'] / walls['ray 2w×1t']:.2f}×"
        )
        print(f"ray vs local, 2 workers: {walls['local 2w×1t'] / walls['ray 2w×1t']:.2f}×")
    anchor = losses["local 1w×1t"]
    for label, series in losses.items():
        diff = (series.loc[anchor.index] - anchor).abs().max()
        print(f"max |loss - local 1w×1t| for {label}: {diff:.2e} nats")


if __name__ == "__main__":
    main()
