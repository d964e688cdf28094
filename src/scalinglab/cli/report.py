"""``scalinglab report`` and ``scalinglab demo``: the self-contained HTML report, and the whole
loop (sweep, fit, held-out check, plan, report) on this machine."""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scalinglab.cli._common import console, err_console, fail, positive, print_json

_RUN_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


@contextmanager
def _bootstrap_progress(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A rich progress bar fed by the fitter's ``progress(stage, done, total)`` callback."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _load(store: Path | None, runs: Path | None, sweep: str | None, drop_top_loss: int):
    from scalinglab.runs import RunsError, load_runs

    if (store is None) == (runs is None):
        fail("give exactly one of --store DB or --runs FILE")
    if sweep is not None and store is None:
        fail("--sweep selects a sweep in a store: it needs --store")
    if drop_top_loss < 0:
        fail(f"--drop-top-loss must be ≥ 0, got {drop_top_loss}")
    try:
        if store is not None:
            if not store.is_file():
                fail(f"--store: no such store {str(store)!r}")
            from scalinglab.sweep.store import StoreError, load_store_runs

            try:
                frame = load_store_runs(store, sweep=sweep)
            except (StoreError, ValueError) as exc:
                fail(f"--store {store}: {exc}")
            if len(frame) == 0:
                what = f"sweep {sweep!r}" if sweep else "it"
                fail(f"--store {store}: {what} holds no finished runs yet")
            table = load_runs(frame, drop_top_loss=drop_top_loss)
            return dataclasses.replace(table, source=str(store))
        assert runs is not None
        if runs.is_dir():
            found = sorted(p.name for p in runs.iterdir() if p.suffix.lower() in _RUN_SUFFIXES)
            listing = ", ".join(found) if found else "none"
            fail(f"--runs: {str(runs)!r} is a folder; give one of its files (found: {listing})")
        return load_runs(runs, drop_top_loss=drop_top_loss)
    except RunsError as exc:
        fail(f"--{'store' if store is not None else 'runs'}: {exc}")


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
        str,
        typer.Option("--law", help="Law to fit: chinchilla, kaplan-nd, power, data-constrained."),
    ] = "chinchilla",
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap resamples (0: none).")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    drop_top_loss: Annotated[
        int,
        typer.Option(
            "--drop-top-loss", help="Drop the K highest-loss runs first (Besiroglu et al.: 5)."
        ),
    ] = 0,
    holdout_top: Annotated[
        float,
        typer.Option("--holdout-top", help="Check: predict this top fraction of runs by compute."),
    ] = 0.05,
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
    gpu: Annotated[
        str, typer.Option("--gpu", help="a100-80gb, h100-sxm, h200 or cpu.")
    ] = "h100-sxm",
    mfu: Annotated[float, typer.Option("--mfu", help="Model FLOP utilisation in (0, 1].")] = 0.4,
    count: Annotated[
        int, typer.Option("--count", "-k", help="Devices in parallel (sets wall days).")
    ] = 1,
    price: Annotated[float | None, typer.Option("--price", help="Price per device-hour.")] = None,
    pue: Annotated[
        float, typer.Option("--pue", help="Data-centre power usage effectiveness.")
    ] = 1.0,
    level: Annotated[
        float, typer.Option("--level", help="Level of bands and plan intervals.")
    ] = 0.9,
    title: Annotated[str | None, typer.Option("--title", help="Title of the page.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Write one self-contained HTML report: figures, fit, held-out errors, plan, runs.

    Fits the law with a bootstrap unless --fit is given, predicts the largest-compute runs
    from the others, plans --budget (default: Chinchilla's 5.76e23 FLOP) and embeds every
    figure; the page loads nothing from the network.

    Example: scalinglab report --runs runs.csv --drop-top-loss 5 --out report.html
    """
    from scalinglab.fit import FitError
    from scalinglab.laws import LAWS
    from scalinglab.plan import PlanError
    from scalinglab.report import CHINCHILLA_FLOPS, build_report
    from scalinglab.runs import RunsError
    from scalinglab.units import UnitError, get_hardware

    budget = budget or [CHINCHILLA_FLOPS]
    for b in budget:
        positive(b, "--budget")
    positive(holdout_above, "--holdout-above")
    if price is not None and not (math.isfinite(price) and price >= 0):
        fail(f"--price must be ≥ 0, got {price!r}")
    if bootstrap < 0:
        fail(f"--bootstrap must be ≥ 0, got {bootstrap}")
    if not 0 < holdout_top < 1:
        fail(f"--holdout-top must be a fraction in (0, 1), got {holdout_top!r}")
    if not 0 < level < 1:
        fail(f"--level must lie in (0, 1), got {level!r}")
    if not 0 < mfu <= 1:
        fail(f"--mfu must be in (0, 1], got {mfu!r}")
    if count < 1:
        fail(f"--count must be an integer ≥ 1, got {count!r}")
    if not (math.isfinite(pue) and pue >= 1):
        fail(f"--pue must be ≥ 1, got {pue!r}")
    if law not in LAWS:
        fail(f"--law: unknown law {law!r}; choose one of {', '.join(LAWS)}")
    try:
        get_hardware(gpu)
    except UnitError as exc:
        fail(f"--gpu: {exc}")
    if fit_path is not None and not fit_path.is_file():
        fail(f"--fit: no such fit file {str(fit_path)!r}")
    if out.exists() and out.is_dir():
        fail(f"--out: {str(out)!r} is a folder; give a file name such as report.html")

    table = _load(store, runs, sweep, drop_top_loss)
    command = shlex.join(["scalinglab", "report", *sys.argv[2:]]) if _called_as("report") else None
    plan_options = {"gpu": gpu, "mfu": mfu, "count": count, "price_per_gpu_hour": price, "pue": pue}
    try:
        with _bootstrap_progress(not as_json and fit_path is None and bootstrap > 0) as progress:
            result = build_report(
                table,
                out,
                fit=fit_path,
                law=law,
                bootstrap=bootstrap,
                seed=seed,
                holdout_top=None if (no_holdout or holdout_above) else holdout_top,
                holdout_above=None if no_holdout else holdout_above,
                budgets=budget,
                plan_options=plan_options,
                level=level,
                figures_dir=figures,
                title=title,
                commands=(command,) if command else (),
                progress=progress,
            )
    except (RunsError, FitError, PlanError, UnitError) as exc:
        fail(str(exc))
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
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(f"report: [bold]{summary['report']}[/]", highlight=False)
