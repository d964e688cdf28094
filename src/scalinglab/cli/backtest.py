"""``scalinglab backtest``: how well does each fitting procedure predict runs it did not see?"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scalinglab import procedures
from scalinglab.cli._common import (
    RUNS_OPTIONS,
    ColumnMap,
    CurveSchedule,
    DropTopLoss,
    StoreSweep,
    api_default,
    column_mapping,
    console,
    esc,
    fail,
    fail_with,
    output,
    print_json,
    stage_progress,
)
from scalinglab.errors import ScalingLabError
from scalinglab.fitting import FitWarning
from scalinglab.outputs import atomic_path
from scalinglab.procedures import PROCEDURES
from scalinglab.runs import RunsWarning, load_runs

# The API's arguments whose options are named otherwise; the rest map by name (cli._common).
_OPTIONS = {"cuts": "--cut", "procedures": "--procedure", **RUNS_OPTIONS}


def _default(name: str) -> Any:
    return api_default(procedures.backtest, name)


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else f"{100 * v:.2f}%"


def _list_procedures() -> None:
    table = Table(title="Procedures (--procedure NAME)")
    table.add_column("name")
    table.add_column("kind")
    table.add_column("what it does")
    for p in PROCEDURES.values():
        table.add_row(p.name, p.kind, p.summary)
    console.print(table)


def backtest(
    runs: Annotated[
        str | None,
        typer.Argument(
            help="Runs table: .csv, .tsv, .parquet, .jsonl, .json, or a scalinglab store (.db)."
        ),
    ] = None,
    procedure: Annotated[
        list[str] | None,
        typer.Option(
            "--procedure",
            "-p",
            help="Procedure to backtest (repeatable; default: "
            f"{' and '.join(_default('procedures'))}). See --list-procedures.",
        ),
    ] = None,
    sweep: StoreSweep = None,
    schedule: CurveSchedule = None,
    group_by: str | None = typer.Option(
        None, "--group-by", "-g", help="Backtest each value of this column separately."
    ),
    cut: Annotated[
        list[float] | None,
        typer.Option(
            "--cut",
            help="Compute cut in FLOP: fit on runs <= cut, predict those above (repeatable). "
            "Default: --n-cuts cuts at C_max/2, C_max/4, ... of each group.",
        ),
    ] = None,
    n_cuts: int = typer.Option(
        _default("n_cuts"), "--n-cuts", help="Number of default cuts (rolling origin)."
    ),
    min_factor: float = typer.Option(
        _default("min_factor"),
        "--min-factor",
        help="Predict only runs at >= this multiple of the cut's compute.",
    ),
    level: float = typer.Option(
        _default("level"), "--level", help="Level of the prediction intervals."
    ),
    bootstrap: int = typer.Option(
        _default("bootstrap"),
        "--bootstrap",
        "-B",
        help="Bootstrap resamples per fit, for the intervals.",
    ),
    seed: int = typer.Option(_default("seed"), "--seed", help="Seed of the bootstrap."),
    drop_top_loss: DropTopLoss = 0,
    column: ColumnMap = None,
    figure: Annotated[
        Path | None,
        typer.Option("--figure", help="Write the error-vs-extrapolation figure here (.png/.svg)."),
    ] = None,
    optimum_column: str | None = typer.Option(
        None,
        "--optimum-column",
        help="Column holding the compute-optimal N of each budget (e.g. N_opt_paper): plans are "
        "backtested against it. Default: the IsoFLOP minima of the runs above each cut.",
    ),
    published_a: float | None = typer.Option(
        None,
        "--published-a",
        help="A published allocation exponent a (N_opt ∝ C^a) to compare each planning fit's "
        "with, for runs without IsoFLOP profiles (Hoffmann et al. 2022: 0.46–0.50).",
    ),
    list_procedures: bool = typer.Option(
        False, "--list-procedures", help="List the named procedures and exit."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Rolling-origin backtest: fit on the runs at or below each compute cut, predict the runs
    above, and report the error against the extrapolation factor, per procedure (and group).

    With --procedure curves the curve procedure fits the training curves (a store's stored
    curves) cut at each cut's compute, and every procedure is scored on the run ends above it.

    Example: scalinglab backtest porian.csv --group-by config --cut 1.6e18 --min-factor 8

    Example: scalinglab backtest scalinglab.db --procedure curves --procedure plain --sweep demo
    """
    if list_procedures:
        _list_procedures()
        return
    if runs is None:
        fail("give a runs table (RUNS), or --list-procedures")
    # Not checked by backtest(), which would plan no cuts or fail inside every fit instead.
    if n_cuts < 1:
        fail(f"--n-cuts must be an integer >= 1, got {n_cuts!r}")
    if bootstrap < 0:
        fail(f"--bootstrap must be an integer >= 0, got {bootstrap!r}")
    if figure is not None and figure.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"--figure must end in .png, .svg or .pdf, got {str(figure)!r}")
    output(figure, "figure", inputs=[runs])
    mapping = column_mapping(column)
    names = procedure or _default("procedures")
    # A curve procedure reads the training curves (a store's stored ones); the backtest scores
    # every procedure on their run ends.
    curves = any(PROCEDURES[p].curves for p in names if p in PROCEDURES)
    if curves and drop_top_loss:
        fail("--drop-top-loss drops final losses: it does not apply to training curves")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunsWarning)
        warnings.simplefilter("ignore", FitWarning)
        try:
            table = load_runs(
                runs,
                columns=mapping or None,
                drop_top_loss=drop_top_loss,
                curves=curves,
                sweep=sweep,
            )
            with stage_progress(not as_json) as update:
                result = procedures.backtest(
                    table,
                    names,
                    cuts=cut or None,
                    n_cuts=n_cuts,
                    min_factor=min_factor,
                    group_by=group_by,
                    level=level,
                    bootstrap=bootstrap,
                    seed=seed,
                    optimum_column=optimum_column,
                    published_a=published_a,
                    schedule=schedule,
                    progress=None
                    if update is None
                    else lambda done, total: update("backtest fits", done, total),
                )
        except ScalingLabError as exc:
            fail_with(exc, _OPTIONS)
    if figure is not None:
        from scalinglab.report.extrapolation import backtest_figure

        fig = backtest_figure(result)
        try:
            with atomic_path(figure, field="figure") as temporary:
                fig.savefig(temporary)
        except ScalingLabError as exc:
            fail_with(exc)

    if as_json:
        payload = result.to_dict()
        if figure is not None:
            payload["figure"] = str(figure)
        print_json(payload)
        return
    _print_tables(result, group_by is not None)
    if figure is not None:
        console.print(f"figure written to {esc(figure)}")


def _print_tables(result: Any, grouped: bool) -> None:
    level = f"{result.level:.0%}"
    overall = result.overall()
    t = Table(title="Backtest: held-out predictions, per procedure")
    for col in ("procedure", "groups", "predictions", "mean |error|", "worst group"):
        t.add_column(col, justify="left" if col == "procedure" else "right")
    t.add_column(f"{level} coverage", justify="right")
    t.add_column("unreliable groups", justify="right")
    for r in overall.to_dict(orient="records"):
        t.add_row(
            r["procedure"],
            str(r["groups"]),
            str(r["n_predictions"]),
            _pct(r["mean_abs_error"]),
            _pct(r["worst_group_error"]),
            _pct(r["coverage"]),
            str(r["flagged_groups"]),
        )
    console.print(t)

    fac = result.by_factor()
    if not fac.empty:
        t = Table(title="Mean |error| by extrapolation factor (run compute / largest fitted)")
        t.add_column("procedure")
        t.add_column("factor", justify="right")
        t.add_column("predictions", justify="right")
        t.add_column("mean |error|", justify="right")
        t.add_column(f"{level} coverage", justify="right")
        for r in fac.to_dict(orient="records"):
            t.add_row(
                r["procedure"],
                r["factor_bin"],
                str(r["n"]),
                _pct(r["mean_abs_error"]),
                _pct(r["coverage"]),
            )
        console.print(t)

    _print_allocation(result)

    groups = result.by_group()
    if grouped and not groups.empty:
        t = Table(title="Per group")
        for col in ("group", "procedure", "chosen", "mean |error|", f"{level} coverage"):
            t.add_column(col, justify="right" if "error" in col or "coverage" in col else "left")
        t.add_column("reliable")
        t.add_column("reasons")
        for r in groups.to_dict(orient="records"):
            reasons = list(r.get("reasons") or [])
            t.add_row(
                esc(r["group"]),
                r["procedure"],
                str(r.get("chosen") or "-"),
                _pct(r["mean_abs_error"]),
                _pct(r["coverage"]),
                "yes" if r.get("reliable") else "[bold red]no[/]",
                esc("; ".join(reasons)),
            )
        console.print(t)
    else:
        for r in result.fits.to_dict(orient="records"):
            if r["procedure"] != r.get("chosen") or not r.get("reliable", True):
                console.print(
                    f"[bold]{r['procedure']}[/] at cut {r['cut_flops']:.3g} FLOP: {r['why']}",
                    highlight=False,
                )
                for reason in r.get("reasons") or ():
                    console.print(f"  [red]unreliable:[/] {esc(reason)}", highlight=False)


def _print_allocation(result: Any) -> None:
    """The allocation backtest: planned N_opt against the optima measured above each cut."""
    if result.allocation.empty and result.published_a is None:
        return
    overall = result.allocation_overall()
    level = f"{result.level:.0%}"
    t = Table(title="Allocation: planned N_opt against the optimum measured above the cut")
    t.add_column("procedure")
    for col in ("optima", "mean |log10 err|", "within 25%", f"{level} coverage", "refused"):
        t.add_column(col, justify="right")
    if result.published_a is not None:
        t.add_column("a (mean)", justify="right")
        t.add_column(f"|a − {result.published_a:g}|", justify="right")
    for r in overall.to_dict(orient="records"):
        n = r.get("n")
        has = n is not None and not (isinstance(n, float) and math.isnan(n))
        row = [
            r["procedure"],
            str(int(n)) if has else "0",
            f"{r['mean_abs_log10_error']:.3f}" if has else "-",
            _pct(r["within_25"]) if has else "-",
            _pct(r["coverage"]) if has else "-",
            str(int(r["refused"])) if has else "-",
        ]
        if result.published_a is not None:
            row += [f"{r['a_mean']:.3f}", f"{r['a_abs_error']:.3f}"]
        t.add_row(*row)
    console.print(t)
    for r in result.fits.to_dict(orient="records"):
        if r.get("planner") is None and r.get("planner_why"):
            console.print(
                f"[bold]{r['procedure']}[/] at cut {r['cut_flops']:.3g} FLOP refuses to plan: "
                f"{r['planner_why']}",
                highlight=False,
            )
