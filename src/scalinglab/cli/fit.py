"""``scalinglab fit``: fit a scaling law to a table of runs, with bootstrap CIs and a holdout."""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from scalinglab import fitting
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
    given,
    output,
    parse_pairs,
    print_json,
    stage_progress,
)
from scalinglab.errors import ScalingLabError
from scalinglab.fitting import LOSSES, FitWarning
from scalinglab.fitting.uncertainty import holdout_split
from scalinglab.laws import INPUT_NAMES, LAWS, X_CHOICES, get_law
from scalinglab.procedures import PROCEDURES, Planner, fit_procedure, with_planner
from scalinglab.runs import CANONICAL_COLUMNS, PARAM_BASES, RunsWarning, load_runs

# The law scalinglab fits when none is named: Hoffmann et al.'s (2022) form of N and D.
_DEFAULT_LAW = "chinchilla"
# Law options the command line sets, by the law's own option name.
_LAW_OPTIONS = {"x": "--x", "fix_E": "--fix-e"}
# The API's arguments whose options are named otherwise; the rest map by name (cli._common).
_OPTIONS = {
    "ci_level": "--level",
    "by": "--bootstrap-by",
    **RUNS_OPTIONS,
    "target": "--predict",
    **_LAW_OPTIONS,
}


def _fit_default(name: str) -> Any:
    return api_default(fitting.fit, name)


def _law_default(law: str, option: str) -> Any:
    return inspect.signature(LAWS[law]).parameters[option].default


def _laws_taking(option: str) -> list[str]:
    return [name for name, cls in LAWS.items() if option in inspect.signature(cls).parameters]


def _law(name: str, options: dict[str, Any]) -> Any:
    """The law ``name`` with the options given on the command line, its own defaults for the
    rest; an option the law does not take is refused naming the laws that do."""
    cls = LAWS.get(name)
    if cls is None:
        fail(f"--law: unknown law {name!r}; choose one of {', '.join(LAWS)}")
    accepted = inspect.signature(cls).parameters
    for option, value in options.items():
        if value is not None and option not in accepted:
            fail(f"{_LAW_OPTIONS[option]} applies only to --law {', '.join(_laws_taking(option))}")
    return get_law(
        name,
        **{
            option: accepted[option].default if value is None else value
            for option, value in options.items()
            if option in accepted
        },
    )


def _parse_target(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    out: dict[str, float] = {}
    for key, value in parse_pairs(text, "--predict").items():
        if key not in INPUT_NAMES:
            fail(f"--predict: unknown input {key!r}; use {', '.join(INPUT_NAMES)}")
        try:
            number = float(value)
        except ValueError:
            fail(f"--predict: {key}={value!r} is not a number")
        if not (math.isfinite(number) and number > 0):
            fail(f"--predict: {key} must be a finite number > 0, got {value!r}")
        out[key] = number
    if not out:
        fail("--predict needs at least one NAME=VALUE pair, e.g. params=7e10,tokens=1.4e12")
    return out


def fit(
    runs: Annotated[
        str,
        typer.Argument(
            help="Runs table: .csv, .tsv, .parquet, .jsonl, .json, or a scalinglab store (.db)."
        ),
    ],
    law: str = typer.Option(_DEFAULT_LAW, "--law", "-l", help=f"Law form: {', '.join(LAWS)}."),
    procedure: str | None = typer.Option(
        None,
        "--procedure",
        "-p",
        help=f"Fit by a named procedure instead ({', '.join(PROCEDURES)}; law, objective and "
        "trusted runs set by it; see `scalinglab backtest --list-procedures`). auto picks one "
        "by a backtest inside the runs, and its intervals add the extrapolation error that "
        "backtest measured.",
    ),
    curves: bool = typer.Option(
        False,
        "--curves",
        help="Fit training curves (rows sharing a run_id are one run's checkpoints; from a "
        "store, every stored run's curve): the checkpoints the schedule makes valid, the "
        "earliest tokens dropped, every run weighing the same (the procedure curves).",
    ),
    schedule: CurveSchedule = None,
    sweep: StoreSweep = None,
    x: str | None = typer.Option(
        None,
        "--x",
        help=f"With --law {' or '.join(_laws_taking('x'))}: the variable, "
        f"{', '.join(X_CHOICES)} (default {_law_default('power', 'x')}).",
    ),
    fix_e: bool = typer.Option(
        False,
        "--fix-e",
        help=f"With --law {' or '.join(_laws_taking('fix_E'))}: fix E = 0 (Kaplan's pure power "
        "law).",
    ),
    loss: str = typer.Option(
        _fit_default("loss"), "--loss", help=f"Objective: {', '.join(LOSSES)}."
    ),
    huber_delta: float = typer.Option(
        _fit_default("huber_delta"),
        "--huber-delta",
        help="Huber's delta on log residuals (Hoffmann et al.: 1e-3).",
    ),
    asymmetry: float = typer.Option(
        _fit_default("asymmetry"),
        "--asymmetry",
        help="With --loss asymmetric: weight in (0, 1) of residuals above the data.",
    ),
    bootstrap: int = typer.Option(
        _fit_default("bootstrap"),
        "--bootstrap",
        "-B",
        help="Bootstrap resamples for confidence intervals (0: none; "
        f"{api_default(fit_procedure, 'bootstrap')} with --procedure).",
    ),
    bootstrap_by: str = typer.Option(
        _fit_default("bootstrap_by"),
        "--bootstrap-by",
        help="Resample whole runs (run) or whole groups (group).",
    ),
    level: float = typer.Option(
        _fit_default("ci_level"), "--level", help="Confidence level of the intervals."
    ),
    seed: int = typer.Option(_fit_default("seed"), "--seed", help="Seed of the bootstrap."),
    holdout_above: float | None = typer.Option(
        None, "--holdout-above", help="Fit on runs with FLOPs <= this; report errors above it."
    ),
    holdout_top: float | None = typer.Option(
        None, "--holdout-top", help="Hold out this fraction (0, 1) of the runs, largest FLOPs."
    ),
    drop_top_loss: DropTopLoss = 0,
    column: ColumnMap = None,
    param_basis: str = typer.Option(
        "unknown", "--param-basis", help=f"What N counts: {', '.join(PARAM_BASES)}."
    ),
    predict: str | None = typer.Option(
        None,
        "--predict",
        help="Predict the loss here, e.g. params=7e10,tokens=1.4e12; near-equal optima that "
        "disagree here are reported.",
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the fit (JSON) here.")
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Fit a scaling law to runs: parameters with bootstrap CIs, warnings, held-out errors.

    Example: scalinglab fit runs.csv --law chinchilla --bootstrap 4000 --out fit.json

    Example: scalinglab fit runs.csv --procedure auto --predict params=7e10,tokens=1.4e12

    Example: scalinglab fit curves.csv --curves --schedule shared

    Example: scalinglab fit scalinglab.db --curves --sweep demo
    """
    mapping = column_mapping(column)
    target = _parse_target(predict)
    output(out, "out", inputs=[runs])
    if curves:
        if procedure not in (None, "curves"):
            fail(f"--curves fits by the procedure curves: drop --procedure {procedure}")
        procedure = "curves"
    elif schedule is not None:
        fail("--schedule applies to --curves")
    if procedure is not None:
        _check_procedure_options(procedure)
        bootstrap = bootstrap if given("bootstrap") else api_default(fit_procedure, "bootstrap")
    else:
        try:
            law_object = _law(law, {"x": x, "fix_E": True if fix_e else None})
        except ScalingLabError as exc:
            fail_with(exc, _OPTIONS)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunsWarning)
        warnings.simplefilter("always", FitWarning)
        try:
            table = load_runs(
                runs,
                columns=mapping or None,
                param_basis=param_basis,
                drop_top_loss=drop_top_loss,
                curves=curves,
                sweep=sweep,
            )
        except ScalingLabError as exc:  # a column of RUNS, not the option of the same name
            fail_with(exc, {**_OPTIONS, **dict.fromkeys(CANONICAL_COLUMNS, "RUNS")})
        try:
            if procedure is not None:
                result, prediction, chosen = _fit_procedure(
                    procedure, table, bootstrap, seed, target, level, as_json, schedule
                )
                planner = chosen.planner
            else:
                chosen = None
                with stage_progress(not as_json and bootstrap > 0) as progress:
                    result = fitting.fit(
                        law_object,
                        table,
                        loss=loss,
                        huber_delta=huber_delta,
                        asymmetry=asymmetry,
                        bootstrap=bootstrap,
                        bootstrap_by=bootstrap_by,
                        seed=seed,
                        holdout_above=holdout_above,
                        holdout_top=holdout_top,
                        ci_level=level,
                        target=target,
                        progress=progress,
                    )
                planner = None
                if {"params", "tokens"} <= set(law_object.inputs):
                    # The plan (scalinglab plan --fit) splits budgets with the fit whose N_opt
                    # agrees best with the IsoFLOP minima measured in the fitted runs.
                    fitted = holdout_split(table, holdout_above, holdout_top)[0]
                    result, planner = with_planner(result, fitted, bootstrap=bootstrap, seed=seed)
                prediction = _prediction(result, target, level) if target else None
        except ScalingLabError as exc:
            fail_with(exc, _OPTIONS)
    runs_warnings = [str(w.message) for w in caught if issubclass(w.category, RunsWarning)]

    if out is not None:
        try:
            result.save(out)
        except ScalingLabError as exc:
            fail_with(exc)

    if as_json:
        payload = result.to_dict(include_bootstrap=False)
        payload["runs_source"] = table.source
        payload["runs_notes"] = list(table.notes)
        payload["runs_warnings"] = runs_warnings
        if chosen is not None:
            payload["procedure"] = chosen.to_dict()
        if prediction is not None:
            payload["prediction"] = prediction
        if out is not None:
            payload["out"] = str(out)
        print_json(payload)
        return
    if chosen is not None:
        console.print(
            f"[bold]procedure {chosen.procedure}[/]: fitted {chosen.chosen} ({chosen.why})",
            highlight=False,
        )
        if len(chosen.fits) > 1:
            members = ", ".join(
                f"{f.diagnostics.get('procedure', f.law)} (weight {w:.2f}, {f.n_runs} runs)"
                for f, w in zip(chosen.fits, chosen.weights, strict=True)
            )
            console.print(
                f"its prediction averages the log losses of {members}; the table below shows "
                "the heaviest",
                highlight=False,
            )
    _print(result, table, runs_warnings, prediction, out)
    if chosen is not None:
        console.print(
            f"prediction intervals add run-to-run scatter {chosen.scatter:.2%} (log) and "
            f"extrapolation error growing {chosen.growth:.3g} per e-fold beyond "
            f"{chosen.max_fitted_flops:.3g} FLOP (from the backtest inside the runs)",
            highlight=False,
        )
    _print_planner(planner)


def _print_planner(planner: Planner | None) -> None:
    """Which fit splits budgets between N and D (``plan`` uses it), or why none may."""
    if planner is None:
        return
    if planner.fit is None:
        console.print(f"[bold red]plans: none[/] ({escape(planner.why)})", highlight=False)
        return
    check = next((c for c in planner.checks if c.procedure == planner.name), None)
    a = ""
    if check is not None and check.a_interval is not None:
        lo, hi = check.a_interval
        a = f"; a = {check.a:.3f} [{lo:.3f}, {hi:.3f}] ({check.level:.0%})"
    console.print(f"[bold]plans with {planner.name}:[/] {escape(planner.why)}{a}", highlight=False)


def _check_procedure_options(procedure: str) -> None:
    """--procedure brings its own law, objective and trusted runs: refuse the options set on
    the command line that it would silently ignore."""
    if procedure not in PROCEDURES:
        fail(f"--procedure must be one of {', '.join(PROCEDURES)}, got {procedure!r}")
    clashing = given(
        "law",
        "x",
        "fix_e",
        "loss",
        "huber_delta",
        "asymmetry",
        "bootstrap_by",
        "holdout_above",
        "holdout_top",
    )
    if clashing:
        fail(
            f"--procedure sets the law and the objective itself: drop {', '.join(clashing)} "
            "(for held-out errors by procedure, use `scalinglab backtest`)"
        )


def _fit_procedure(
    procedure: str,
    table: Any,
    bootstrap: int,
    seed: int,
    target: dict[str, float] | None,
    level: float,
    quiet: bool,
    schedule: str | None,
) -> tuple[Any, dict[str, Any] | None, Any]:
    """Fit by a procedure: its verdict-carrying member fit, the prediction, the ProcedureFit."""
    status = (
        contextlib.nullcontext()
        if quiet
        else console.status(f"fitting procedure {procedure} (bootstrap {bootstrap})")
    )
    with status:
        chosen = fit_procedure(
            procedure, table, bootstrap=bootstrap, seed=seed, target=target, schedule=schedule
        )
    prediction = None
    if target:
        lo, hi = chosen.interval(level, **target)
        prediction = {
            "inputs": target,
            "loss": chosen.predict(**target),
            "interval": [float(lo), float(hi)],
            "level": level,
        }
    return chosen.fit, prediction, chosen


def _prediction(result: Any, target: dict[str, float], level: float) -> dict[str, Any]:
    try:
        value = result.predict(**target)
    except ScalingLabError as exc:
        fail(f"--predict: {exc}")
    row: dict[str, Any] = {"inputs": target, "loss": value}
    if result.bootstrap_params is not None:
        lo, hi = result.prediction_interval(level, **target)
        row["interval"] = [float(lo), float(hi)]
        row["level"] = level
    return row


def _print(result: Any, runs: Any, runs_warnings: list[str], prediction: Any, out: Any) -> None:
    # The fit's own report, with the table's source and notes (not the trusted subset's).
    text = result.report(
        source=runs.source, notes=runs.notes, warnings=runs_warnings, prediction=prediction
    )
    console.print(text, highlight=False, markup=False, soft_wrap=True)
    if out is not None:
        console.print(f"fit written to {esc(out)}", highlight=False)
