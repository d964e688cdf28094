"""Which run next, with our own trainer as the oracle: ``suggest`` against the demo's IsoFLOP sweep.

``adaptive_design.py`` replays existing runs, so suggest may only buy runs at IsoFLOP's own
budgets. Here every buildable run is a candidate (sizes snapped to the trainer's shapes, whole
optimiser steps, any compute up to a round's budget, WSD cooldown bundles and continuations of
kept trunks at their own cost), and each chosen run is trained for real on this CPU.

- **IsoFLOP** (the anchor): the sweep ``scalinglab demo`` trains (``DEMO_SPEC``: 5 levels 2e10
  to 2e11 FLOP, 7 sizes per level, 21 runs), fitted level by level upwards; ``--store`` reuses a
  demo store (copied, never written) so that a rerun trains nothing.
- **Seed**: the IsoFLOP runs of its two lowest levels, retrained into a fresh store (same
  configuration, seed and thread count, so the same losses).
- **suggest**: rounds of :func:`scalinglab.sweep.suggest.suggest` on that store (k = 4, each
  round's budget one eighth of IsoFLOP's compute beyond the seed, as ``adaptive_design.py``;
  the fit's bootstrap ensemble ranks, as there), each round's spec planned and trained into the
  store with :func:`scalinglab.sweep.plan_sweep` / :func:`scalinglab.sweep.run_sweep` (what
  ``sweep run`` does), until half of IsoFLOP's compute is spent.

Target: the loss at the run the demo plans at ten times its largest run (default N = 38,600,
D = 8,638,464, 2e12 FLOP: the demo's plan in the store it trained), a prediction a decade beyond
the sweep, as Chinchilla's target in ``adaptive_design.py`` is a held-out run beyond its pool.
Truth: that run trained by the same recipe (taken from the store if it holds it, else trained).
Measure: ``adaptive_cases.measure`` (Chinchilla's law with Huber, 95 % percentile bootstrap
width, 200 resamples by run, relative error against the truth), identical for both designs.

    PYTHONPATH=src .venv/bin/python benchmarks/adaptive_trainer.py \
        --store /work/demo5/scalinglab.db --work /tmp/adaptive-trainer [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from adaptive_cases import FIT, Case, measure
from adaptive_design import _at, _met

from scalinglab import load_runs
from scalinglab.demo.sweep import DEMO_SPEC
from scalinglab.store import Store
from scalinglab.sweep import SweepSpec, parse_spec, plan_sweep, run_sweep
from scalinglab.sweep.candidates import design_point
from scalinglab.sweep.spec_values import DesignSpec
from scalinglab.sweep.suggest import Target, suggest

ROUNDS = 8  # a suggest round's budget = IsoFLOP's compute beyond the seed / ROUNDS
K = 4
SEED_LEVELS = 2
# The run `scalinglab demo` planned at 10x its largest run and trained (/work/demo5).
DEMO_TARGET = (38_600.0, 8_638_464.0)
# --tiny (the test's): 4 levels 1e9 to 8e9 FLOP of 4 sizes, context 32, batch 8, 50 steps at
# least; the target about 3x its top level.
TINY_TARGET = (6_984.0, 573_440.0)


def tiny_spec() -> SweepSpec:
    """The demo's recipe shrunk to a sweep that trains in about a minute on 2 cores."""
    spec = parse_spec(DEMO_SPEC, default_name="demo")
    return dataclasses.replace(
        spec,
        name="tiny",
        design=dataclasses.replace(
            spec.design,
            flops_min=1e9,
            flops_max=8e9,
            levels=4,
            sizes_per_level=4,
            width_decades=1.0,
            tokens_per_param=10,
            min_steps=50,
        ),
        model=dataclasses.replace(spec.model, context_length=32),
        train=dataclasses.replace(spec.train, batch_size=8),
    )


def _train(spec: SweepSpec, store: Path, workers: int) -> Any:
    """Train every run of ``spec`` that ``store`` lacks (``sweep run``'s calls)."""
    plan = plan_sweep(spec, workers=workers)
    with Store(store) as db:
        summary = run_sweep(
            plan, db, workers=workers, checkpoint_root=store.with_name(store.name + ".ckpt")
        )
    if summary.failed:
        raise SystemExit(f"{len(summary.failed)} run(s) of {spec.name} failed; see {store}")
    return summary


def _points(spec: SweepSpec, name: str, points: list) -> SweepSpec:
    return dataclasses.replace(
        spec,
        name=name,
        design=DesignSpec(kind="points", points=tuple(points), min_steps=spec.design.min_steps),
    )


def _case(store: Path, sweep: str | None, target: Target, truth: float) -> Case:
    """The store's finished points (of ``sweep``) as a replay case whose every run is chosen."""
    frame = load_runs(store, sweep=sweep).frame[["params", "tokens", "flops", "loss"]].copy()
    frame["level"] = frame["flops"]
    frame = frame.reset_index(drop=True)
    return Case(store.stem, frame, frame.index.to_numpy(), target, truth)


def _measure(case: Case, rows: np.ndarray) -> tuple[float, float]:
    width, error, _ = measure(case, rows)
    return width, error


def _truth(spec: SweepSpec, store: Path, params: float, tokens: float, workers: int) -> float:
    """The loss of the run at (params, tokens): the store's, or trained into it now."""
    point = _points(spec, f"{spec.name}-target", [(params, tokens)])
    run = plan_sweep(point).runs[0]
    _train(point, store, workers)
    frame = load_runs(store).frame
    at = frame[(frame["params"] == run.params) & (frame["tokens"] == run.tokens)]
    return float(at["loss"].iloc[0])


def run_benchmark(
    spec: SweepSpec,
    work: Path,
    target_point: tuple[float, float],
    *,
    store: Path | None = None,
    workers: int = 2,
    log: Any = print,
) -> dict:
    """Train (or reuse) the IsoFLOP sweep, then suggest rounds from its seed; measure both.

    Returns a JSON-ready dict: the IsoFLOP curve and suggest's, each a list of
    (FLOPs spent beyond the seed, width, error), the runs suggest bought, and the ratios.
    """
    work.mkdir(parents=True, exist_ok=True)
    iso_store, seed_store = work / "isoflop.db", work / "suggest.db"
    if store is not None and not iso_store.exists():
        shutil.copyfile(store, iso_store)
    t0 = time.perf_counter()
    iso_plan = plan_sweep(spec, workers=workers)
    _train(spec, iso_store, workers)
    params, tokens = target_point
    truth = _truth(spec, iso_store, params, tokens, workers)
    target = Target.predict(params, tokens)
    train_iso_s = time.perf_counter() - t0
    log(
        f"IsoFLOP sweep ready ({len(iso_plan.runs)} runs) and truth {truth:.4f} at "
        f"N={params:,.0f}, D={tokens:,.0f}: {train_iso_s:.0f} s"
    )

    iso = _case(iso_store, spec.name, target, truth)
    levels = sorted({r.compute_level for r in iso_plan.runs})
    by_level = {lv: [r for r in iso_plan.runs if r.compute_level == lv] for lv in levels}
    seed_runs = [r for lv in levels[:SEED_LEVELS] for r in by_level[lv]]
    seed_keys = {(float(r.params), float(r.tokens)) for r in seed_runs}
    pairs = list(zip(iso.runs["params"], iso.runs["tokens"], strict=True))
    seed_rows = [i for i, p in enumerate(pairs) if p in seed_keys]
    iso_curve, spent = [(0.0, *_measure(iso, np.array(seed_rows)))], 0.0
    rows = list(seed_rows)
    for lv in levels[SEED_LEVELS:]:
        keys = {(float(r.params), float(r.tokens)) for r in by_level[lv]}
        new = [i for i, p in enumerate(pairs) if p in keys]
        rows += new
        spent += float(iso.runs.loc[new, "flops"].sum())
        iso_curve.append((spent, *_measure(iso, np.array(rows))))
        log(
            f"IsoFLOP up to level {lv:.3g}: {spent:.3g} FLOP, width {iso_curve[-1][1]:.4f}, "
            f"error {iso_curve[-1][2]:.4f}"
        )
    total = spent

    t1 = time.perf_counter()
    seed_spec = _points(spec, f"{spec.name}-seed", [design_point(r) for r in seed_runs])
    _train(seed_spec, seed_store, workers)
    case = _case(seed_store, None, target, truth)
    sug_curve = [(0.0, *_measure(case, case.seed))]
    log(f"seed: {len(case.runs)} runs, width {sug_curve[0][1]:.4f}, error {sug_curve[0][2]:.4f}")
    spent, bought = 0.0, []
    while spent < total / 2 * 0.999:
        s = suggest(
            seed_store,
            target,
            min(total / ROUNDS, total / 2 - spent),
            k=K,
            spec=dataclasses.replace(spec, store=str(seed_store)),
            fit_options=dict(FIT),
        )
        if not s.proposals or s.spec is None:
            log("suggest proposed nothing: stop")
            break
        summary = _train(s.spec, seed_store, workers)
        spent += s.spent_flops
        case = _case(seed_store, None, target, truth)
        sug_curve.append((spent, *_measure(case, case.seed)))
        for p in s.proposals:
            run = p.candidate.run
            bought.append(
                {
                    "round": len(sug_curve) - 1,
                    "params": p.candidate.params,
                    "tokens": p.candidate.tokens,
                    "cooldowns_to_tokens": list(p.candidate.branches),
                    "resumed_from_tokens": run.resume_tokens if run else 0,
                    "point_flops": 6.0 * p.candidate.params * p.candidate.tokens,
                    "cost_flops": p.candidate.cost_flops,
                }
            )
        log(
            f"suggest round {len(sug_curve) - 1}: {s.spent_flops:.3g} FLOP, "
            f"trained in {summary.wall_s:.0f} s; spent {spent:.3g} ({spent / total:.2f}×C): "
            f"width {sug_curve[-1][1]:.4f}, error {sug_curve[-1][2]:.4f}"
        )
        for b in bought[-len(s.proposals) :]:
            log("  " + _describe(b))
    _, w_iso, e_iso = iso_curve[-1]
    w_half, e_half = _at(sug_curve, total / 2)
    # Between IsoFLOP's levels: a bought run's own point not within 5 % of any level's compute.
    between = [
        b for b in bought if min(abs(math.log(b["point_flops"] / lv)) for lv in levels) > 0.05
    ]
    return {
        "target": {"params": params, "tokens": tokens, "truth_loss": truth},
        "isoflop_flops": total,
        "isoflop": iso_curve,
        "suggest": sug_curve,
        "bought": bought,
        "width_ratio_half": w_half / w_iso,
        "error_iso": e_iso,
        "error_half": e_half,
        "isoflop_half": _at(iso_curve, total / 2),
        "met": _met(sug_curve, iso_curve),
        "levels_flops": levels,
        "bought_between_levels": len(between),
        "narrowest_half": min(
            (c for c in sug_curve if c[0] <= total / 2 * 1.0001), key=lambda c: c[1]
        ),
        "suggest_s": time.perf_counter() - t1,
    }


def _describe(b: dict) -> str:
    """One bought run: its point, its cooldowns, where it resumed, its 6ND and its cost."""
    text = (
        f"N={b['params']:,.0f} D={b['tokens']:,.0f} (D/N {b['tokens'] / b['params']:.0f}, "
        f"6ND {b['point_flops']:.3g})"
    )
    if b["cooldowns_to_tokens"]:
        text += " + cooldowns to D=" + ", ".join(f"{d:,.0f}" for d in b["cooldowns_to_tokens"])
    if b["resumed_from_tokens"]:
        text += f", continued from a kept trunk at D={b['resumed_from_tokens']:,}"
    return text + f": cost {b['cost_flops']:.3g} FLOP"


def _table(result: dict) -> None:
    total = result["isoflop_flops"]
    print(f"\n{'design':10s} {'spent FLOP':>11s} {'×C':>5s} {'width':>7s} {'error':>7s}")
    for name in ("isoflop", "suggest"):
        for spent, width, error in result[name]:
            print(f"{name:10s} {spent:11.3g} {spent / total:5.2f} {width:7.4f} {error:7.4f}")
    print(
        f"\nsuggest width at ≤ ½ C / IsoFLOP final width: {result['width_ratio_half']:.2f}; "
        f"error at ≤ ½ C {result['error_half']:.4f} against IsoFLOP's final "
        f"{result['error_iso']:.4f}; IsoFLOP's own width at ≤ ½ C "
        f"{result['isoflop_half'][0]:.4f}"
    )
    spent, width, error = result["narrowest_half"]
    print(
        f"narrowest suggest checkpoint at ≤ ½ C: {spent / total:.2f}×C, width {width:.4f} "
        f"({width / result['isoflop'][-1][1]:.2f} × IsoFLOP's final), error {error:.4f}; "
        f"target met (a checkpoint ≤ ½ C as narrow, error no worse, as adaptive_design.py "
        f"counts it): {'yes' if result['met'] else 'NO'}"
    )
    target = result["target"]
    print(
        f"suggest bought {len(result['bought'])} runs, {result['bought_between_levels']} of them "
        f"at a compute not within 5 % of an IsoFLOP level "
        f"({', '.join(f'{lv:.3g}' for lv in result['levels_flops'])} FLOP); the target's D/N is "
        f"{target['tokens'] / target['params']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a demo store to copy (reused runs)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the stores")
    parser.add_argument("--workers", type=int, default=2, help="runs trained at once")
    parser.add_argument("--json", type=Path, help="write the curves here")
    parser.add_argument("--tiny", action="store_true", help="the test's tiny sweep instead")
    args = parser.parse_args()
    t0, cpu0 = time.perf_counter(), time.process_time()
    spec = tiny_spec() if args.tiny else parse_spec(DEMO_SPEC, default_name="demo")
    point = TINY_TARGET if args.tiny else DEMO_TARGET
    result = run_benchmark(spec, args.work, point, store=args.store, workers=args.workers)
    _table(result)
    print(
        f"{time.perf_counter() - t0:.0f} s wall ({result['suggest_s']:.0f} s for the seed and the "
        f"suggest rounds), {time.process_time() - cpu0:.0f} s CPU in the driver"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
