"""``scalinglab fit``: fit a scaling law to a table of runs, with bootstrap CIs and a holdout."""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from scalinglab.cli._common import (
    column_mapping,
    console,
    fail,
    parse_pairs,
    positive,
    print_json,
    stage_progress,
)

_LAWS = ("chinchilla", "kaplan-nd", "power", "data-constrained")
_XS = ("params", "tokens", "flops")
_LOSSES = ("huber", "mse", "asymmetric")


def _parse_target(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    out: dict[str, float] = {}
    for key, value in parse_pairs(text, "--predict").items():
        if key not in ("params", "tokens", "flops", "unique_tokens"):
            fail(f"--predict: unknown input {key!r}; use params, tokens, flops, unique_tokens")
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
    law: str = typer.Option("chinchilla", "--law", "-l", help=f"Law form: {', '.join(_LAWS)}."),
    procedure: str | None = typer.Option(
        None,
        "--procedure",
        "-p",
        help="Fit by a named procedure instead (law, objective and trusted runs set by it; see "
        "`scalinglab backtest --list-procedures`). auto picks one by a backtest inside the runs, "
        "and its intervals add the extrapolation error that backtest measured.",
    ),
    x: str | None = typer.Option(
        None, "--x", help="With --law power: the variable, params, tokens or flops (default)."
    ),
    fix_e: bool = typer.Option(
        False, "--fix-e", help="With --law power: fix E = 0 (Kaplan's pure power law)."
    ),
    loss: str = typer.Option("huber", "--loss", help=f"Objective: {', '.join(_LOSSES)}."),
    huber_delta: float = typer.Option(
        1e-3, "--huber-delta", help="Huber's delta on log residuals (Hoffmann et al.: 1e-3)."
    ),
    asymmetry: float = typer.Option(
        0.9,
        "--asymmetry",
        help="With --loss asymmetric: weight in (0, 1) of residuals above the data.",
    ),
    bootstrap: int = typer.Option(
        0,
        "--bootstrap",
        "-B",
        help="Bootstrap resamples for confidence intervals (0: none; 100 with --procedure).",
    ),
    bootstrap_by: str = typer.Option(
        "run", "--bootstrap-by", help="Resample whole runs (run) or whole groups (group)."
    ),
    level: float = typer.Option(0.95, "--level", help="Confidence level of the intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    holdout_above: float | None = typer.Option(
        None, "--holdout-above", help="Fit on runs with FLOPs <= this; report errors above it."
    ),
    holdout_top: float | None = typer.Option(
        None, "--holdout-top", help="Hold out this fraction (0, 1) of the runs, largest FLOPs."
    ),
    drop_top_loss: int = typer.Option(
        0, "--drop-top-loss", help="Drop the K highest-loss runs first (Besiroglu et al.: 5)."
    ),
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            "-c",
            help="Map a canonical column to yours, e.g. -c params='Model Size' (repeatable).",
        ),
    ] = None,
    param_basis: str = typer.Option(
        "unknown", "--param-basis", help="What N counts: total, non_embedding or unknown."
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
    """
    from scalinglab import fitting
    from scalinglab.fitting import FitError, FitWarning
    from scalinglab.laws import LawError
    from scalinglab.procedures import BacktestError, ProcedureError
    from scalinglab.runs import RunsError, RunsWarning, load_runs

    if law not in _LAWS:
        fail(f"--law must be one of {', '.join(_LAWS)}, got {law!r}")
    if loss not in _LOSSES:
        fail(f"--loss must be one of {', '.join(_LOSSES)}, got {loss!r}")
    options: dict[str, Any] = {}
    if law == "power":
        if x is not None and x not in _XS:
            fail(f"--x must be one of {', '.join(_XS)}, got {x!r}")
        options = {"x": x or "flops", "fix_E": fix_e}
    elif x is not None or fix_e:
        fail("--x and --fix-e apply only to --law power")
    positive(huber_delta, "--huber-delta")
    if not 0 < asymmetry < 1:
        fail(f"--asymmetry must be in (0, 1), got {asymmetry!r}")
    if bootstrap < 0:
        fail(f"--bootstrap must be an integer >= 0, got {bootstrap!r}")
    if bootstrap_by not in ("run", "group"):
        fail(f"--bootstrap-by must be run or group, got {bootstrap_by!r}")
    if not 0 < level < 1:
        fail(f"--level must be in (0, 1), got {level!r}")
    positive(holdout_above, "--holdout-above")
    if holdout_top is not None and not 0 < holdout_top < 1:
        fail(f"--holdout-top must be a fraction in (0, 1), got {holdout_top!r}")
    if holdout_above is not None and holdout_top is not None:
        fail("give --holdout-above or --holdout-top, not both")
    if drop_top_loss < 0:
        fail(f"--drop-top-loss must be an integer >= 0, got {drop_top_loss!r}")
    mapping = column_mapping(column)
    target = _parse_target(predict)
    if procedure is not None:
        _check_procedure_options(
            procedure,
            {
                "--law": law != "chinchilla",
                "--x": x is not None,
                "--fix-e": fix_e,
                "--loss": loss != "huber",
                "--huber-delta": huber_delta != 1e-3,
                "--asymmetry": asymmetry != 0.9,
                "--bootstrap-by": bootstrap_by != "run",
                "--holdout-above": holdout_above is not None,
                "--holdout-top": holdout_top is not None,
            },
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunsWarning)
        warnings.simplefilter("always", FitWarning)
        try:
            table = load_runs(
                runs, columns=mapping or None, param_basis=param_basis, drop_top_loss=drop_top_loss
            )
            if procedure is not None:
                result, prediction, chosen = _fit_procedure(
                    procedure, table, bootstrap or 100, seed, target, level, quiet=as_json
                )
            else:
                chosen = None
                with stage_progress(not as_json and bootstrap > 0) as progress:
                    result = fitting.fit(
                        law,
                        table,
                        law_options=options,
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
                prediction = _prediction(result, target, level) if target else None
        except (RunsError, FitError, LawError, BacktestError, ProcedureError) as exc:
            fail(str(exc))
    runs_warnings = [str(w.message) for w in caught if issubclass(w.category, RunsWarning)]

    if out is not None:
        try:
            result.save(out)
        except OSError as exc:
            fail(f"--out: cannot write {str(out)!r}: {exc.strerror or exc}")

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


def _check_procedure_options(procedure: str, given: dict[str, bool]) -> None:
    """--procedure brings its own law, objective and trusted runs: refuse the options (``given``:
    option name → set away from its default) that it would silently ignore."""
    from scalinglab.procedures import PROCEDURES

    if procedure not in PROCEDURES:
        fail(f"--procedure must be one of {', '.join(PROCEDURES)}, got {procedure!r}")
    clashing = [name for name, set_ in given.items() if set_]
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
    *,
    quiet: bool,
) -> tuple[Any, dict[str, Any] | None, Any]:
    """Fit by a procedure: its verdict-carrying member fit, the prediction, the ProcedureFit."""
    from scalinglab.procedures import fit_procedure

    status = (
        contextlib.nullcontext()
        if quiet
        else console.status(f"fitting procedure {procedure} (bootstrap {bootstrap})")
    )
    with status:
        chosen = fit_procedure(procedure, table, bootstrap=bootstrap, seed=seed, target=target)
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
    from scalinglab.laws import LawError

    try:
        value = result.predict(**target)
    except LawError as exc:
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
        console.print(f"fit written to {out}", highlight=False)
