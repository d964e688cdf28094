"""``scalinglab demo``: the whole loop on this machine, from training to a report.

1. **Sweep**: train a small family of GPT models on the built-in ``stdlib`` corpus (Python's
   own standard library source) into a store, ``./scalinglab.db`` by default. Finished runs are
   kept: a second demo trains nothing and reuses them.
2. **Fit**: the Chinchilla law L(N, D) = E + A/N^α + B/D^β with a bootstrap.
3. **Held-out check**: fit again without the largest-compute run and predict it; the relative
   error of that prediction is the demo's honest figure of merit.
4. **Plan**: the compute-optimal N and D for an example budget (ten times the demo's compute),
   costed on this CPU at the utilisation the demo measured.
5. **Report**: one self-contained HTML page.

The sweep is :data:`DEMO_SPEC` (also in ``examples/demo.toml``, to read and change).
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scalinglab.errors import ScalingLabError
from scalinglab.report.build import ReportResult, build_report
from scalinglab.runs import Runs, load_runs

__all__ = ["DEMO_SPEC", "DemoResult", "demo_plan", "run_demo"]

# Tuned on real runs on a 2-core CPU (the README's demo section gives the measured wall time and
# held-out error).
DEMO_SPEC = """\
# The sweep `scalinglab demo` trains: the same text is DEMO_SPEC in scalinglab/demo.py.
# Train it alone with: scalinglab sweep run examples/demo.toml
#
# Six one-layer GPTs whose width alone varies (32 to 112, 16-wide heads: the shape rule keeps
# one family, so N is the only thing that changes), each trained once for 1.5M byte tokens of
# Python's standard library with a warmup-stable-decay schedule; four cooldowns branched off
# each stable phase (at 10, 20, 35 and 55 % of the run) give four more points for a fifth of the
# cost: 30 points of L(N, D) from six runs, in 4 to 6 minutes on 2 CPU cores.
[sweep]
name = "demo"
seed = 0

[data]
corpus = "stdlib"
tokenizer = "byte"

[model]
context_length = 64
param_basis = "non_embedding"
flops_method = "6nd"

[train]
batch_size = 16
lr = 3e-3
schedule = "wsd"
cooldown_fraction = 0.2
eval_interval_tokens = 300_000

[execution]
workers = 2

[design]
kind = "wsd"
params = [12e3, 27e3, 49e3, 77e3, 110e3, 150e3]
tokens = 1_500_000
branch_fractions = [0.1, 0.2, 0.35, 0.55]
"""

# The example budget the demo plans: this many times the compute of the whole demo sweep.
BUDGET_MULTIPLE = 10.0


@dataclass(frozen=True)
class DemoResult:
    """What a demo did and found.

    Attributes
    ----------
    wall_s
        Wall time of the whole demo (sweep, fits, report).
    sweep_wall_s
        Wall time of the sweep (near zero when every run was reused).
    trained, reused, failed
        Runs trained now, runs the store already held, runs that failed.
    runs
        The points fitted.
    heldout
        The largest-compute point and its prediction from the others: ``params``,
        ``tokens``, ``flops``, ``loss``, ``predicted``, ``rel_error`` (predicted/observed − 1).
    budget_flops
        The example budget planned.
    mfu
        Model FLOP utilisation the sweep achieved on this CPU (against its measured peak).
    report
        The report that was written (its ``path``, ``fit``, ``content``).
    store
        The store the runs are in.
    commands
        Shell commands that redo each step by hand.
    """

    wall_s: float
    sweep_wall_s: float
    trained: int
    reused: int
    failed: int
    runs: Runs
    heldout: Mapping[str, float] | None
    budget_flops: float
    mfu: float | None
    report: ReportResult
    store: Path
    commands: tuple[str, ...]

    @property
    def allocation(self) -> Mapping[str, Any] | None:
        """The plan for the example budget, as a table row (``None`` if none was made)."""
        table = self.report.content.plan_table
        return None if table is None or not len(table) else table.iloc[0].to_dict()


def demo_plan(workers: int | None = None) -> Any:
    """The demo's sweep, designed (no training): a :class:`scalinglab.sweep.Plan`."""
    from scalinglab.sweep.budget import plan_sweep
    from scalinglab.sweep.spec import parse_spec

    return plan_sweep(parse_spec(DEMO_SPEC, default_name="demo"), workers=workers)


def run_demo(
    store: str | Path = "scalinglab.db",
    out: str | Path = "scalinglab-report.html",
    *,
    workers: int | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    figures_dir: str | Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    plan: Any = None,
    train_fn: Callable[..., Any] | None = None,
) -> DemoResult:
    """Run the demo: sweep (reusing finished runs), fit, held-out check, plan, report.

    Parameters
    ----------
    store
        The SQLite store; created if missing, finished runs in it are reused.
    out
        Where to write the HTML report.
    workers
        Runs trained in parallel (default: the spec's, 2).
    bootstrap, seed
        Bootstrap resamples of the fit and their seed.
    figures_dir
        Also write every figure there as PNG and SVG.
    on_event
        Receives every :class:`scalinglab.sweep.executors.RunEvent` (progress bars).
    on_stage
        Told the name of each stage as it starts (``"sweep"``, ``"fit"``, ``"report"``).
    progress
        Receives the bootstrap's ``progress(stage, done, total)``.
    plan, train_fn
        A designed plan and a training function in place of the demo's (tests use small
        stand-ins; the demo itself trains real models).

    Raises
    ------
    RuntimeError
        Some runs failed, so there is nothing honest to fit.
    """
    from scalinglab.store import Store, load_store_runs
    from scalinglab.sweep.executors import run_sweep

    t0 = time.monotonic()
    stage = on_stage or (lambda name: None)
    store = Path(store)
    out = Path(out)
    stage("design")
    plan = plan if plan is not None else demo_plan(workers)
    name = plan.spec.name

    stage("sweep")
    checkpoints = store.with_name(store.name + ".ckpt")
    with Store(store) as db:
        summary = run_sweep(
            plan,
            db,
            workers=workers,
            checkpoint_root=checkpoints,
            on_event=on_event,
            train_fn=train_fn,
        )
        stored = db.runs(name, status="finished")
        curves = db.curves(name)
    if summary.failed:
        raise ScalingLabError(
            f"{len(summary.failed)} demo run(s) failed (first: {summary.failed[0][:12]}); "
            f"see `scalinglab sweep status` on {store}, then run the demo again"
        )

    stage("fit")
    frame = load_store_runs(store, sweep=name)
    runs = dataclasses.replace(load_runs(frame), source=str(store))
    flops = np.sort(runs.frame["flops"].to_numpy(float))
    # Hold out exactly the largest-compute point: every run below it is fitted.
    threshold = float(flops[-2]) if len(flops) > 1 else None
    mfu = _measured_mfu(stored)
    budget = BUDGET_MULTIPLE * float(plan.total_flops)
    plan_options: dict[str, Any] = {"gpu": "cpu", "mfu": mfu} if mfu else {}
    commands = _commands(store, out, name, threshold, budget, mfu)

    stage("report")
    result = build_report(
        runs,
        out,
        law="chinchilla",
        bootstrap=bootstrap,
        seed=seed,
        holdout_top=None,
        holdout_above=threshold,
        budgets=(budget,),
        plan_options=plan_options,
        figures_dir=figures_dir,
        title="scalinglab demo: a scaling law measured on this machine",
        commands=commands,
        curves=curves,
        progress=progress,
    )
    heldout = None
    if result.holdout and result.holdout.get("runs"):
        top = max(result.holdout["runs"], key=lambda r: r["flops"])
        heldout = {k: float(v) for k, v in top.items() if k != "interval"}
    return DemoResult(
        wall_s=time.monotonic() - t0,
        sweep_wall_s=summary.wall_s,
        trained=summary.finished,
        reused=summary.already_finished,
        failed=len(summary.failed),
        runs=runs,
        heldout=heldout,
        budget_flops=budget,
        mfu=mfu,
        report=result,
        store=store,
        commands=commands,
    )


def _measured_mfu(stored: Any) -> float | None:
    """FLOP/s the sweep sustained, over this CPU's measured matmul peak (in (0, 1])."""
    from scalinglab.units import get_hardware

    if stored is None or not len(stored) or "wall_s" not in stored:
        return None
    trunks = stored[(stored["kind"] == "run") & stored["wall_s"].notna()]
    flops = trunks["flops_6nd"].fillna(0.0)
    # A trunk's own FLOPs leave out its cooldown branches; cost them at the trunk's rate.
    wall = float(trunks["wall_s"].sum())
    if wall <= 0:
        return None
    branches = stored[stored["kind"] == "branch"]
    if len(branches) and "branch_tokens" in branches:
        extra = (branches["tokens"] - branches["branch_tokens"]).clip(lower=0)
        per_token = branches["flops_6nd"] / branches["tokens"]
        flops = flops.sum() + float((extra * per_token).sum())
    else:
        flops = float(flops.sum())
    peak = get_hardware("cpu").peak_flops
    achieved = flops / wall
    if not np.isfinite(achieved) or achieved <= 0 or not np.isfinite(peak) or peak <= 0:
        return None
    return float(min(1.0, achieved / peak))


def _commands(
    store: Path, out: Path, sweep: str, threshold: float | None, budget: float, mfu: float | None
) -> tuple[str, ...]:
    report = ["scalinglab", "report", "--store", str(store), "--sweep", sweep]
    if threshold is not None:
        report += ["--holdout-above", f"{threshold:.17g}"]
    report += ["--budget", f"{budget:.6g}"]
    if mfu:
        report += ["--gpu", "cpu", "--mfu", f"{mfu:.4g}"]
    report += ["--out", str(out)]
    return (
        shlex.join(["scalinglab", "demo", "--store", str(store), "--out", str(out)]),
        "# or step by step:",
        shlex.join(["scalinglab", "sweep", "run", "examples/demo.toml", "--store", str(store)]),
        shlex.join(report),
    )
