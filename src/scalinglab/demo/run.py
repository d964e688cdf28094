"""The demo's steps in order: sweep, fit, held-out check, plan, train the plan, report."""

from __future__ import annotations

import dataclasses
import shlex
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scalinglab.demo.check import BUDGET_MULTIPLE, CheckPlan, measured, plan_check
from scalinglab.demo.law import LawChoice, choose_law
from scalinglab.demo.predictive import predictive_fit
from scalinglab.demo.sweep import demo_plan, heldout_threshold
from scalinglab.errors import ScalingLabError
from scalinglab.fitting import FitWarning
from scalinglab.report.build import ReportResult, build_report
from scalinglab.report.values import TrainedRun
from scalinglab.runs import Runs, load_runs

if TYPE_CHECKING:
    from scalinglab.fitting import Fit

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    """What a demo did and found.

    Attributes
    ----------
    wall_s
        Wall time of the whole demo.
    sweep_wall_s, check_wall_s
        Wall time of the sweep and of training the plan and the alternative (near zero when
        the store already held them).
    cpu_s
        CPU seconds of the runs trained by this call (sweep and plan; 0 when all were reused).
    trained, reused, failed
        Sweep runs trained now, sweep runs the store already held, runs that failed.
    runs
        The points fitted.
    law
        The law fitted and why (:class:`~scalinglab.demo.law.LawChoice`).
    heldout
        The check fit's hold-out report: every run of the top compute level predicted from the
        levels below (``runs``, ``mean_abs_rel_error``, ``threshold_flops``...).
    budget_flops
        The budget planned: ten times the largest sweep run's compute.
    checks
        The planned run and the alternative, predicted before training and then measured.
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
    check_wall_s: float
    cpu_s: float
    trained: int
    reused: int
    failed: int
    runs: Runs
    law: LawChoice
    heldout: Mapping[str, Any] | None
    budget_flops: float
    checks: tuple[TrainedRun, ...]
    mfu: float | None
    report: ReportResult
    store: Path
    commands: tuple[str, ...]

    @property
    def fit(self) -> Fit:
        """The fit planned with."""
        return self.law.fit

    @property
    def allocation(self) -> Mapping[str, Any] | None:
        """The plan for the budget, as a table row (``None`` if none was made)."""
        table = self.report.content.plan_table
        return None if table is None or not len(table) else table.iloc[0].to_dict()


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
    on_plan: Callable[[CheckPlan], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    plan: Any = None,
    train_fn: Callable[..., Any] | None = None,
) -> DemoResult:
    """Run the demo: sweep (reusing finished runs), fit, check, plan, train the plan, report.

    Parameters
    ----------
    store
        The SQLite store; created if missing, finished runs in it are reused (the plan's too).
    out
        Where to write the HTML report.
    workers
        Runs trained in parallel (default: the spec's, 2).
    bootstrap, seed
        Bootstrap resamples of the fit and their seed.
    figures_dir
        Also write every figure there as PNG and SVG.
    on_event
        Receives every :class:`scalinglab.sweep.executors.RunEvent` (progress bars), of the
        sweep and then of the planned runs.
    on_stage
        Told the name of each stage as it starts: ``"design"``, ``"sweep"``, ``"fit"``,
        ``"train plan"``, ``"report"``.
    on_plan
        Given the plan and its predictions (a :class:`~scalinglab.demo.check.CheckPlan`)
        before they are trained.
    progress
        Receives the bootstrap's ``progress(stage, done, total)``.
    plan, train_fn
        A designed sweep and a training function in place of the demo's (tests use small
        stand-ins; the demo itself trains real models).

    Raises
    ------
    scalinglab.errors.ScalingLabError
        Some runs failed, so there is nothing honest to fit (or to compare).
    """
    from scalinglab.store import Store, load_store_runs

    t0 = time.monotonic()
    stage = on_stage or (lambda name: None)
    store, out = Path(store), Path(out)
    stage("design")
    plan = plan if plan is not None else demo_plan(workers)
    name = plan.spec.name
    checkpoints = store.with_name(store.name + ".ckpt")

    def train(what: Any) -> Any:
        with Store(store) as db:
            summary = _run_sweep(what, db, workers, checkpoints, on_event, train_fn)
            stored = db.runs(what.spec.name)
            curves = db.curves(what.spec.name)
        if summary.failed:
            raise ScalingLabError(
                f"{len(summary.failed)} demo run(s) failed (first: {summary.failed[0][:12]}); "
                f"see `scalinglab sweep status` on {store}, then run the demo again"
            )
        return summary, stored, curves

    stage("sweep")
    summary, stored, curves = train(plan)

    stage("fit")
    runs = dataclasses.replace(load_runs(load_store_runs(store, sweep=name)), source=str(store))
    with warnings.catch_warnings():
        # Every FitWarning is kept in Fit.warnings, which the report and the CLI show once.
        warnings.simplefilter("ignore", FitWarning)
        law = choose_law(runs, bootstrap=bootstrap, seed=seed, progress=progress)
    mfu = _measured_mfu(stored)
    plan_options: dict[str, Any] = {"gpu": "cpu", "mfu": mfu} if mfu else {}
    budget = BUDGET_MULTIPLE * float(runs.frame["flops"].max())

    uncertainty = predictive_fit(law.fit, runs)
    check = plan_check(
        law.fit,
        plan.spec,
        budget,
        workers=workers,
        plan_options=plan_options,
        uncertainty=uncertainty,
    )
    if on_plan is not None:
        on_plan(check)
    stage("train plan")
    check_summary, check_stored, _ = train(check.plan)
    checks = measured(check, check_stored)

    stage("report")
    threshold = heldout_threshold(plan, runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        heldout_fit = _heldout_fit(law, runs, threshold, bootstrap, seed)
    commands = _commands(store, out, name, threshold, budget, mfu)
    result = build_report(
        runs,
        out,
        fit=law.fit,
        holdout_fit=heldout_fit,
        budgets=(budget,),
        plan_options=plan_options,
        figures_dir=figures_dir,
        title="scalinglab demo: a scaling law measured on this machine, then put to the test",
        commands=commands,
        curves=curves,
        progress=progress,
        answer=_answer(law, check, checks),
        trained=checks,
    )
    return DemoResult(
        wall_s=time.monotonic() - t0,
        sweep_wall_s=summary.wall_s,
        check_wall_s=check_summary.wall_s,
        cpu_s=float(summary.cpu_s + check_summary.cpu_s),
        trained=summary.finished,
        reused=summary.already_finished,
        failed=len(summary.failed),
        runs=runs,
        law=law,
        heldout=result.holdout,
        budget_flops=budget,
        checks=checks,
        mfu=mfu,
        report=result,
        store=store,
        commands=commands,
    )


def _heldout_fit(
    law: LawChoice, runs: Runs, threshold: float | None, bootstrap: int, seed: int
) -> Fit | None:
    """The same law and form fitted without the top compute level, predicting it."""
    from scalinglab.fitting import FitError
    from scalinglab.fitting import fit as fit_law

    if threshold is None:
        return None
    try:
        return fit_law(
            law.fit.law,
            runs,
            bootstrap=min(bootstrap, 100),
            seed=seed,
            holdout_above=threshold,
        )
    except FitError:  # too few runs below the threshold: the report says there is no check
        return None


def _run_sweep(
    plan: Any,
    db: Any,
    workers: int | None,
    checkpoints: Path,
    on_event: Callable[[Any], None] | None,
    train_fn: Callable[..., Any] | None,
) -> Any:
    from scalinglab.sweep.executors import run_sweep

    return run_sweep(
        plan,
        db,
        workers=workers,
        checkpoint_root=checkpoints,
        on_event=on_event,
        train_fn=train_fn,
    )


def _interval(run: TrainedRun) -> str:
    if run.interval is None:
        return ""
    return f" ({run.level:.0%} interval {run.interval[0]:.3f}–{run.interval[1]:.3f})"


def _answer(law: LawChoice, check: CheckPlan, checks: tuple[TrainedRun, ...]) -> tuple[str, ...]:
    """The report's opening sentences: the law, the plan, and how the plan fared."""
    fit = law.fit
    values = {**dict(fit.params), **fit.derived}
    ci = fit.ci or {}

    def shown(name: str, symbol: str) -> str:
        lo_hi = ci.get(name)
        extra = f" [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]" if lo_hi else ""
        return f"{symbol} = {values[name]:.3g}{extra}"

    symbols = {"E": "E", "alpha": "α", "beta": "β", "alpha_N": "α_N", "alpha_D": "α_D"}
    names = [n for n in ("E", *law.exponents) if n in values]
    if "a" in values:
        symbols["a"] = "a (N_opt ∝ C^a)"
        names.append("a")
    lines = [
        f"Law: {fit.law_object.formula} fitted to {fit.n_runs} runs, "
        + ", ".join(shown(n, symbols[n]) for n in names)
        + f" ({fit.ci_level:.0%} bootstrap intervals). {law.note}",
    ]
    a = check.allocation
    plan_run = checks[0]
    lines.append(
        f"Plan: at {check.budget_flops:.3g} FLOP ({BUDGET_MULTIPLE:g}× the largest sweep run), "
        f"N = {a.params:,.0f} parameters on D = {a.tokens:,.0f} tokens ({a.tokens_per_param:.0f} "
        f"tokens per parameter); trained as N = {plan_run.params:,.0f}, D = "
        f"{plan_run.tokens:,.0f}, the law predicts a loss of {plan_run.predicted:.4f}"
        f"{_interval(plan_run)}."
    )
    for run in checks:
        if run.measured is None:
            lines.append(f"{run.label}: not trained.")
            continue
        inside = {True: "inside", False: "outside", None: "without"}[run.inside]
        lines.append(
            f"{run.label.capitalize()} (N = {run.params:,.0f}, D = {run.tokens:,.0f}): "
            f"predicted {run.predicted:.4f}, measured {run.measured:.4f} "
            f"({100 * run.rel_error:+.2f}%, {inside} the interval)."
        )
    if len(checks) > 1 and all(r.measured is not None for r in checks):
        best, other = checks[0], checks[1]
        gap = other.measured / best.measured - 1.0
        predicted_gap = other.predicted / best.predicted - 1.0
        verdict = "beats" if gap > 0 else "does not beat"
        lines.append(
            f"At equal compute the plan's allocation {verdict} the alternative "
            f"({other.label}): {100 * gap:+.2f}% loss for the alternative, against "
            f"{100 * predicted_gap:+.2f}% predicted."
        )
    return tuple(lines)


def _measured_mfu(stored: Any) -> float | None:
    """FLOP/s the sweep sustained, over this CPU's measured matmul peak (in (0, 1])."""
    from scalinglab.units import get_hardware

    if stored is None or not len(stored) or "wall_s" not in stored:
        return None
    stored = stored[stored["status"] == "finished"] if "status" in stored else stored
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
        "# or step by step (the report of the sweep alone, without the trained plan):",
        shlex.join(["scalinglab", "sweep", "run", "examples/demo.toml", "--store", str(store)]),
        shlex.join(report),
    )
