"""``scalinglab report`` and ``scalinglab demo``: the self-contained HTML report, and the whole
loop (sweep, fit, held-out check, plan, report) on this machine."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scalinglab.cli._common import (
    GPU_HELP,
    RUNS_OPTIONS,
    api_default,
    console,
    err_console,
    esc,
    fail,
    fail_with,
    output,
    positive,
    print_json,
    stage_progress,
)
from scalinglab.errors import ScalingLabError
from scalinglab.laws import LAWS
from scalinglab.units import compute_cost

# The API's arguments whose options are named otherwise; the rest map by name (cli._common).
_OPTIONS = {"ci_level": "--level", "budgets": "--budget", "price_per_gpu_hour": "--price"}
# Options left unset take build_report's and run_demo's own defaults (not imported here:
# the report pulls in matplotlib, which `scalinglab --help` should not wait for).
_API_DEFAULT = "default: the report's own"


def _cost_default(name: str) -> Any:
    return api_default(compute_cost, name)


_RUN_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


def _load(store: Path | None, runs: Path | None, sweep: str | None, drop_top_loss: int):
    from scalinglab.runs import load_runs

    if (store is None) == (runs is None):
        fail("give exactly one of --store DB or --runs FILE")
    if sweep is not None and store is None:
        fail("--sweep selects a sweep in a store: it needs --store")
    try:
        if store is not None:
            if not store.is_file():
                fail(f"--store: no such store {str(store)!r}")
            from scalinglab.store import StoreError, load_store_runs

            try:
                frame = load_store_runs(store, sweep=sweep)
            except (StoreError, ValueError) as exc:
                fail(f"--store {store}: {exc}")
            if len(frame) == 0:
                what = f"sweep {sweep!r}" if sweep else "it"
                fail(f"--store {store}: {what} holds no finished runs yet")
            table = load_runs(frame, drop_top_loss=drop_top_loss)
            return dataclasses.replace(table, source=str(store)), _store_curves(store, sweep)
        assert runs is not None
        if runs.is_dir():
            found = sorted(p.name for p in runs.iterdir() if p.suffix.lower() in _RUN_SUFFIXES)
            listing = ", ".join(found) if found else "none"
            fail(f"--runs: {str(runs)!r} is a folder; give one of its files (found: {listing})")
        return load_runs(runs, drop_top_loss=drop_top_loss), None
    except ScalingLabError as exc:
        fail_with(exc, {"source": "--store" if store is not None else "--runs"})


def _store_curves(store: Path, sweep: str | None) -> Any:
    """The store's loss curves (``None`` if it keeps none): a figure, never a failure."""
    from scalinglab.store import Store, StoreError

    try:
        with Store(store, readonly=True) as db:
            return db.curves(sweep)
    except (StoreError, ValueError, KeyError):
        return None


def report(
    store: Annotated[
        Path | None,
        typer.Option("--store", help="A scalinglab store (SQLite) from `scalinglab sweep run`."),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option("--runs", help="A table of runs: CSV, TSV, Parquet, JSONL or JSON records."),
    ] = None,
    fit_path: Annotated[
        Path | None,
        typer.Option("--fit", help="A fit.json from `scalinglab fit --out`; default: fit here."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    figures: Annotated[
        Path | None,
        typer.Option("--figures", help="Also write every figure to this folder as PNG and SVG."),
    ] = None,
    sweep: Annotated[
        str | None, typer.Option("--sweep", help="Only this sweep of the store.")
    ] = None,
    law: Annotated[
        str | None,
        typer.Option("--law", help=f"Law to fit: {', '.join(LAWS)} ({_API_DEFAULT})."),
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option("--bootstrap", help=f"Bootstrap resamples (0: none; {_API_DEFAULT})."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help=f"Seed of the bootstrap ({_API_DEFAULT}).")
    ] = None,
    drop_top_loss: Annotated[
        int,
        typer.Option(
            "--drop-top-loss", help="Drop the K highest-loss runs first (Besiroglu et al.: 5)."
        ),
    ] = 0,
    holdout_top: Annotated[
        float | None,
        typer.Option(
            "--holdout-top",
            help=f"Check: predict this top fraction of runs by compute ({_API_DEFAULT}).",
        ),
    ] = None,
    holdout_above: Annotated[
        float | None,
        typer.Option(
            "--holdout-above", help="Check: predict every run above this FLOP count instead."
        ),
    ] = None,
    no_holdout: Annotated[
        bool, typer.Option("--no-holdout", help="Skip the held-out check.")
    ] = False,
    budget: Annotated[
        list[float] | None,
        typer.Option(
            "--budget", "-C", help="Budget in FLOP to plan (repeatable); default 5.76e23."
        ),
    ] = None,
    gpu: Annotated[str, typer.Option("--gpu", help=GPU_HELP)] = _cost_default("gpu"),
    mfu: Annotated[
        float, typer.Option("--mfu", help="Model FLOP utilisation in (0, 1].")
    ] = _cost_default("mfu"),
    count: Annotated[
        int, typer.Option("--count", "-k", help="Devices in parallel (sets wall days).")
    ] = _cost_default("count"),
    price: Annotated[float | None, typer.Option("--price", help="Price per device-hour.")] = None,
    pue: Annotated[
        float, typer.Option("--pue", help="Data-centre power usage effectiveness.")
    ] = _cost_default("pue"),
    level: Annotated[
        float | None,
        typer.Option("--level", help=f"Level of bands and plan intervals ({_API_DEFAULT})."),
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="Title of the page.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Write one self-contained HTML report: figures, fit, held-out errors, plan, runs.

    Fits the law with a bootstrap unless --fit is given, predicts the largest-compute runs
    from the others, plans --budget (default: Chinchilla's 5.76e23 FLOP) and embeds every
    figure; the page loads nothing from the network.

    Example: scalinglab report --runs runs.csv --drop-top-loss 5 --out report.html
    """
    from scalinglab.report import build_report

    for b in budget or []:
        positive(b, "--budget")
    plan_options = {"gpu": gpu, "mfu": mfu, "count": count, "price_per_gpu_hour": price, "pue": pue}
    # The report turns a plan that fails into a note; options it could never use fail here,
    # checked by the API itself (as is the held-out fraction, which the fit would skip).
    try:
        compute_cost(1.0, **plan_options)
    except ScalingLabError as exc:
        fail_with(exc, _OPTIONS)
    if holdout_top is not None and not 0 < holdout_top < 1:
        fail(f"--holdout-top must be a fraction in (0, 1), got {holdout_top!r}")
    if fit_path is not None and not fit_path.is_file():
        fail(f"--fit: no such fit file {str(fit_path)!r}")
    output(out, "out", inputs=[store, runs, fit_path])
    output(figures, "figures", inputs=[store, runs, fit_path], folder=True)

    table, curves = _load(store, runs, sweep, drop_top_loss)
    command = shlex.join(["scalinglab", "report", *sys.argv[2:]]) if _called_as("report") else None
    given = {
        name: value
        for name, value in dict(
            law=law, bootstrap=bootstrap, seed=seed, level=level, budgets=budget or None
        ).items()
        if value is not None
    }
    if no_holdout or holdout_above:
        given["holdout_top"] = None
    elif holdout_top is not None:
        given["holdout_top"] = holdout_top
    try:
        with stage_progress(not as_json and fit_path is None and bootstrap != 0) as progress:
            result = build_report(
                table,
                out,
                fit=fit_path,
                holdout_above=None if no_holdout else holdout_above,
                plan_options=plan_options,
                figures_dir=figures,
                **given,
                title=title,
                commands=(command,) if command else (),
                curves=curves,
                progress=progress,
            )
    except ScalingLabError as exc:
        fail_with(exc, {**_OPTIONS, **RUNS_OPTIONS})
    summary = report_summary(result)
    if as_json:
        print_json(summary)
        return
    print_summary(summary)


def _called_as(name: str) -> bool:
    return len(sys.argv) > 1 and sys.argv[1] == name


def report_summary(result: Any) -> dict[str, Any]:
    """The machine-readable summary of a :class:`~scalinglab.report.ReportResult`."""
    fit = result.fit
    plan = result.content.plan_table
    out: dict[str, Any] = {
        "report": str(result.path),
        "runs": len(result.content.runs),
        "law": None if fit is None else fit.law,
        "params": None if fit is None else dict(fit.params),
        "derived": None if fit is None else fit.derived,
        "ci": None if fit is None or fit.ci is None else {k: list(v) for k, v in fit.ci.items()},
        "ci_level": None if fit is None else fit.ci_level,
        "holdout": None,
        "plans": [] if plan is None else _records(plan),
        "figures": [str(p) for p in result.figure_paths],
        "warnings": list(result.content.warnings),
        "notes": list(result.content.notes),
    }
    if result.holdout:
        out["holdout"] = {k: v for k, v in result.holdout.items()}
    return out


def _records(frame: Any) -> list[dict[str, Any]]:
    rows = []
    for row in frame.to_dict(orient="records"):
        rows.append({k: list(v) if isinstance(v, tuple) else v for k, v in row.items()})
    return rows


def print_summary(summary: dict[str, Any]) -> None:
    """Print the fit, held-out error and plan of a report summary as rich tables."""
    if summary["params"]:
        table = Table(title=f"Fit: {summary['law']} on {summary['runs']} runs")
        table.add_column("parameter", style="bold")
        table.add_column("estimate", justify="right")
        level = summary.get("ci_level") or 0.95
        table.add_column(f"{level:.0%} interval", justify="right")
        ci = summary.get("ci") or {}
        for name, value in {**summary["params"], **(summary.get("derived") or {})}.items():
            interval = ci.get(name)
            shown = f"[{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""
            table.add_row(name, f"{value:.4g}", shown)
        console.print(table)
    else:  # no fit (too few runs for the law): the notes say why
        for note in summary.get("notes", ()):
            console.print(f"note: {esc(note)}", highlight=False)
    holdout = summary.get("holdout")
    if holdout:
        console.print(
            f"held-out check: fitted on {holdout['n_train']} runs with C ≤ "
            f"{holdout['threshold_flops']:.3g} FLOP; the {holdout['n_holdout']} larger run(s) "
            f"are predicted with mean |relative error| "
            f"[bold]{100 * holdout['mean_abs_rel_error']:.2f}%[/] "
            f"(max {100 * holdout['max_abs_rel_error']:.2f}%)",
            highlight=False,
        )
    for plan in summary["plans"]:
        console.print(
            f"plan for {plan['budget (FLOP)']:.3g} FLOP ({plan['PF-days']:,.1f} PF-days): "
            f"N = {plan['N']:.3g}, D = {plan['D']:.3g} (D/N = {plan['D/N']:.1f}), "
            f"loss {plan['loss']:.3f}",
            highlight=False,
        )
    for warning in summary["warnings"]:
        err_console.print(f"[yellow]warning:[/] {esc(warning)}", highlight=False, soft_wrap=True)
    console.print(f"report: [bold]{esc(summary['report'])}[/]", highlight=False)


class _TrainingBars:
    """One bar over the demo sweep's FLOPs, fed by the executor's run events."""

    def __init__(self, plan: Any, progress: Progress, reused: set[str] | frozenset = frozenset()):
        self.progress = progress
        self.cost = {r.key: r.cost_flops for r in plan.runs}
        self.per_token = {r.key: r.cost_flops / max(1, r.cost_tokens) for r in plan.runs}
        self.done: dict[str, float] = {k: self.cost[k] for k in reused if k in self.cost}
        self.reused = len(self.done)
        self.finished = 0
        self.total_runs = len(plan.runs)
        self.task = progress.add_task(
            "training", total=sum(self.cost.values()) or 1.0, status=self._status()
        )

    def _status(self) -> str:
        reused = f" (+{self.reused} reused from the store)" if self.reused else ""
        return f"{self.finished}/{self.total_runs - self.reused} runs trained{reused}"

    def __call__(self, event: Any) -> None:
        key = event.run.key
        if event.kind == "progress" and event.point is not None:
            tokens = float(event.point.get("tokens") or 0.0)
            self.done[key] = min(self.cost.get(key, 0.0), tokens * self.per_token.get(key, 0.0))
        elif event.kind == "finished":
            self.finished += 1
            self.done[key] = self.cost.get(key, 0.0)
            loss = "" if event.loss is None else f" loss {event.loss:.3f}"
            self.progress.console.print(
                f"  trained N={event.run.params:,} on D={event.run.tokens:,} tokens{loss}",
                highlight=False,
            )
        elif event.kind in ("retry", "failed"):
            self.done[key] = 0.0
            last = (event.error or "?").strip().splitlines()[-1:] or ["?"]
            self.progress.console.print(
                f"[yellow]{event.kind}:[/] run {key[:12]}: {last[0]}", highlight=False
            )
        self.progress.update(self.task, completed=sum(self.done.values()), status=self._status())


def demo(
    store: Annotated[
        Path, typer.Option("--store", help="The store; finished runs in it are reused.")
    ] = Path("scalinglab.db"),
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML report to write.")] = Path(
        "scalinglab-report.html"
    ),
    workers: Annotated[
        int | None, typer.Option("--workers", "-k", help="Runs trained in parallel (default 2).")
    ] = None,
    bootstrap: Annotated[
        int | None,
        typer.Option("--bootstrap", help="Bootstrap resamples of the fit (default: the demo's)."),
    ] = None,
    figures: Annotated[
        Path | None,
        typer.Option("--figures", help="Also write every figure to this folder as PNG and SVG."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary instead of text.")
    ] = False,
) -> None:
    """The whole loop on this machine: train a small sweep, fit, check, plan, report.

    Trains small GPT models on the built-in stdlib corpus (examples/demo.toml) into --store,
    fits the Chinchilla law with a bootstrap, predicts the largest-compute run from the others,
    plans ten times the demo's compute and writes one HTML report. Run it again: the finished
    runs are reused and nothing is retrained.
    """
    import time

    from scalinglab.demo import demo_plan, run_demo

    t0 = time.monotonic()
    if workers is not None and workers < 1:
        fail(f"--workers must be an integer ≥ 1, got {workers}")
    if bootstrap is not None and bootstrap < 0:
        fail(f"--bootstrap must be ≥ 0, got {bootstrap}")
    if store.exists() and store.is_dir():
        fail(f"--store: {str(store)!r} is a folder; give a file name such as scalinglab.db")
    output(out, "out", inputs=[store])
    say = err_console if as_json else console
    say.print("[bold]scalinglab demo[/]: designing the sweep...", highlight=False)
    try:
        plan = demo_plan(workers)
    except ScalingLabError as exc:
        fail(f"demo sweep: {exc}")
    say.print(
        f"{len(plan.runs)} models, {plan.points} points of the law, {plan.total_flops:.3g} FLOP "
        f"on {workers or plan.workers} worker(s); store {store}",
        highlight=False,
    )
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=say,
        transient=False,
    )
    try:
        with bar:
            events = _TrainingBars(plan, bar, _finished_keys(store, plan))
            fit_task: dict[str, Any] = {}

            def boot(stage: str, done: int, total: int) -> None:
                if stage not in fit_task:
                    fit_task[stage] = bar.add_task(stage, total=total, status="")
                bar.update(fit_task[stage], completed=done, total=total, status=f"{done}/{total}")

            result = run_demo(
                store,
                out,
                workers=workers,
                **({} if bootstrap is None else {"bootstrap": bootstrap}),
                figures_dir=figures,
                on_event=events,
                progress=boot,
                plan=plan,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished runs are kept in {store}; run `scalinglab demo` again to "
            "go on where it stopped",
            highlight=False,
        )
        raise typer.Exit(code=130) from None
    except ScalingLabError as exc:
        fail(f"demo: {exc}")
    wall = time.monotonic() - t0
    payload = demo_summary(result, wall)
    if as_json:
        print_json(payload)
        return
    _print_demo(payload)


def _finished_keys(store: Path, plan: Any) -> set[str]:
    """Keys of the plan's runs that the store already holds finished (reused, not retrained)."""
    if not store.is_file():
        return set()
    from scalinglab.store import Store, StoreError

    try:
        with Store(store, readonly=True) as db:
            status = db.statuses(r.key for r in plan.runs)
    except StoreError:
        return set()
    return {k for k, v in status.items() if v == "finished"}


def demo_summary(result: Any, wall_s: float) -> dict[str, Any]:
    """The machine-readable summary of a demo."""
    fit = result.report.fit
    return {
        "wall_s": wall_s,
        "sweep_wall_s": result.sweep_wall_s,
        "trained": result.trained,
        "reused": result.reused,
        "points": len(result.runs),
        "store": str(result.store),
        "report": str(result.report.path),
        "law": fit.law if fit else None,
        "params": dict(fit.params) if fit else None,
        "derived": fit.derived if fit else None,
        "ci": None if fit is None or fit.ci is None else {k: list(v) for k, v in fit.ci.items()},
        "heldout": dict(result.heldout) if result.heldout else None,
        "budget_flops": result.budget_flops,
        "mfu": result.mfu,
        "plan": None if result.allocation is None else _plain_row(result.allocation),
        "warnings": list(result.report.content.warnings),
        "commands": list(result.commands),
    }


def _plain_row(row: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}


def _print_demo(p: dict[str, Any]) -> None:
    console.print(
        f"runs: {p['trained']} trained now, {p['reused']} reused from {p['store']} "
        f"({p['points']} points of the law)",
        highlight=False,
    )
    if p["params"]:
        ci = p.get("ci") or {}
        parts = []
        for name in ("alpha", "beta", "a"):
            value = {**p["params"], **(p.get("derived") or {})}.get(name)
            if value is None:
                continue
            interval = ci.get(name)
            shown = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
            parts.append(f"{name} = {value:.3f}{shown}")
        console.print(f"fit ({p['law']}, 95% bootstrap intervals): " + ", ".join(parts))
    held = p.get("heldout")
    if held:
        console.print(
            f"held-out check: the largest-compute run (N={held['params']:,.0f}, "
            f"D={held['tokens']:,.0f}, C={held['flops']:.3g} FLOP) predicted from the others: "
            f"loss {held['predicted']:.4f} vs measured {held['loss']:.4f}, relative error "
            f"[bold]{100 * held['rel_error']:+.2f}%[/]",
            highlight=False,
        )
    plan = p.get("plan")
    if plan:
        hours = next((v for k, v in plan.items() if k.endswith("-hours") or "hours (" in k), None)
        cost = f", {hours:,.2f} hours on this CPU" if hours is not None else ""
        console.print(
            f"plan for {p['budget_flops']:.3g} FLOP (10× this demo): N = {plan['N']:,.0f}, "
            f"D = {plan['D']:,.0f} tokens, predicted loss {plan['loss']:.3f}{cost}",
            highlight=False,
        )
    for warning in p.get("warnings") or ():
        console.print(f"[yellow]warning:[/] {esc(warning)}", highlight=False)
    console.print(f"wall time: [bold]{p['wall_s']:.0f} s[/]", highlight=False)
    console.print(f"report: [bold]{esc(p['report'])}[/]", highlight=False)
