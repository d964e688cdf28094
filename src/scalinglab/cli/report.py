"""``scalinglab report``: the self-contained HTML report of any runs (``scalinglab demo`` is in
:mod:`scalinglab.cli.demo`)."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scalinglab.cli._common import (
    GPU_HELP,
    RUNS_OPTIONS,
    CurveSchedule,
    DropTopLoss,
    StoreSweep,
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
from scalinglab.procedures.curves import SCHEDULES
from scalinglab.units import compute_cost

# The API's arguments whose options are named otherwise; the rest map by name (cli._common).
_OPTIONS = {"ci_level": "--level", "budgets": "--budget", "price_per_gpu_hour": "--price"}
# Options left unset take build_report's own defaults (not imported here:
# the report pulls in matplotlib, which `scalinglab --help` should not wait for).
_API_DEFAULT = "default: the report's own"


def _cost_default(name: str) -> Any:
    return api_default(compute_cost, name)


_RUN_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


def _load(
    store: Path | None, runs: Path | None, sweep: str | None, drop_top_loss: int, curves: bool
):
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
                frame = load_store_runs(store, sweep=sweep, curves=curves)
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


def _check_curves(
    curves: bool,
    schedule: str | None,
    store: Path | None,
    fit_path: Path | None,
    law: str | None,
    drop_top_loss: int,
) -> None:
    """--curves fits a store's training curves here by the procedure curves: refuse what it
    cannot use."""
    if not curves:
        if schedule is not None:
            fail("--schedule applies to --curves")
        return
    if store is None:
        fail("--curves fits a store's training curves: it needs --store DB")
    if fit_path is not None:
        fail("--curves fits the training curves here: drop --fit (or --curves, to draw the fit)")
    if law is not None:
        fail("--curves fits by the procedure curves, which sets the law (chinchilla): drop --law")
    if drop_top_loss:
        fail("--drop-top-loss drops final points; it does not apply to --curves")
    if schedule is not None and schedule not in SCHEDULES:
        fail(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


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
    sweep: StoreSweep = None,
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
    drop_top_loss: DropTopLoss = 0,
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
    curves: Annotated[
        bool,
        typer.Option(
            "--curves",
            help="Fit the store's training curves (every stored checkpoint the schedule makes "
            "valid, the procedure curves, as `fit --curves`); the check fits the checkpoints "
            "at or below the held-out threshold and predicts the run ends above it.",
        ),
    ] = False,
    schedule: CurveSchedule = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Write one self-contained HTML report: figures, fit, held-out errors, plan, runs.

    Fits the law with a bootstrap unless --fit is given, predicts the largest-compute runs
    from the others, plans --budget (default: Chinchilla's 5.76e23 FLOP) and embeds every
    figure; the page loads nothing from the network.

    Example: scalinglab report --runs runs.csv --drop-top-loss 5 --out report.html

    Example: scalinglab report --store scalinglab.db --curves --out report.html
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
    _check_curves(curves, schedule, store, fit_path, law, drop_top_loss)
    output(out, "out", inputs=[store, runs, fit_path])
    output(figures, "figures", inputs=[store, runs, fit_path], folder=True)

    table, loss_curves = _load(store, runs, sweep, drop_top_loss, curves)
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
        # A curve fit reports no bootstrap stages (the procedure fits them inside): a spinner.
        bars = not as_json and fit_path is None and bootstrap != 0 and not curves
        spinner = (
            console.status("fitting the training curves (procedure curves) and the check")
            if curves and not as_json
            else contextlib.nullcontext()
        )
        with stage_progress(bars) as progress, spinner:
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
                curves=loss_curves,
                progress=progress,
                fit_curves=curves,
                schedule=schedule,
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
        "curves": None if fit is None else _plain(fit.diagnostics.get("curves")),
        "plans": [] if plan is None else _records(plan),
        "figures": [str(p) for p in result.figure_paths],
        "warnings": list(result.content.warnings),
        "notes": list(result.content.notes),
    }
    if result.holdout:
        out["holdout"] = _plain(result.holdout)
    return out


def _plain(value: Any) -> Any:
    """A fit's frozen mappings and tuples as JSON's dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _records(frame: Any) -> list[dict[str, Any]]:
    rows = []
    for row in frame.to_dict(orient="records"):
        rows.append({k: list(v) if isinstance(v, tuple) else v for k, v in row.items()})
    return rows


def print_summary(summary: dict[str, Any]) -> None:
    """Print the fit, held-out error and plan of a report summary as rich tables."""
    if summary.get("curves"):  # how the training curves were read, before the fit
        console.print("fitted the training curves (procedure curves):", highlight=False)
        for note in summary["curves"]["notes"]:
            console.print(f"  {esc(note)}", highlight=False)
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
        fitted = f"{holdout['n_train']} runs"
        if holdout.get("curves"):
            fitted = (
                f"{holdout['curves']['points']} points of the training curves "
                f"({holdout['n_train']} run ends)"
            )
        console.print(
            f"held-out check: fitted on {fitted} with C ≤ "
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
