"""From runs (and optionally a saved fit) to a written report: fit, check, plan, draw, write.

This is what ``scalinglab report`` and ``scalinglab demo`` call. It fits the law with a bootstrap
when no fit is given, makes a second fit that holds the largest-compute runs out and predicts
them (the honest test of a scaling law is extrapolation), plans the given budgets, draws every
figure and writes one self-contained HTML page.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scalinglab import fitting
from scalinglab.fitting import Fit, FitError, FitWarning, load_fit, refit
from scalinglab.outputs import check_output
from scalinglab.procedures import ProcedureError, with_planner
from scalinglab.procedures.curves import check_schedule
from scalinglab.report.content import build_content
from scalinglab.report.curvefit import curve_fits
from scalinglab.report.figures import ReportFigure, figure_bytes, make_figures, save_figures
from scalinglab.report.html import write_report
from scalinglab.report.values import ReportContent, TrainedRun
from scalinglab.runs import Runs, as_runs

__all__ = ["CHINCHILLA_FLOPS", "ReportResult", "build_report"]

# Chinchilla's training compute: 70B parameters on 1.4T tokens, 6·N·D = 5.88·10^23; Hoffmann et
# al. (2022, Table 3) quote the Gopher budget Chinchilla matched as 5.76·10^23 FLOP.
CHINCHILLA_FLOPS = 5.76e23


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` made.

    Attributes
    ----------
    path
        The HTML file written.
    content
        Everything the page shows, as values.
    fit
        The fit drawn (the one given, or the one made here on every run).
    holdout_fit
        The fit made without the largest-compute runs, whose errors the page reports
        (``None`` when no hold-out was possible or asked for); with ``fit_curves``, the curve
        fit on the checkpoints at or below the threshold.
    figure_paths
        PNG and SVG files written when a figure folder was given.
    """

    path: Path
    content: ReportContent
    fit: Fit | None
    holdout_fit: Fit | None
    figure_paths: tuple[Path, ...] = ()

    @property
    def holdout(self) -> Mapping[str, Any] | None:
        """The hold-out report (per-run relative errors and their mean) of the check fit."""
        checked = self.fit if self.fit is not None and self.fit.holdout else self.holdout_fit
        return None if checked is None else checked.holdout


def build_report(
    runs: Runs | str | Path,
    out: str | Path,
    *,
    fit: Fit | str | Path | None = None,
    holdout_fit: Fit | None = None,
    law: str = "chinchilla",
    law_options: Mapping[str, Any] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    holdout_top: float | None = 0.05,
    holdout_above: float | None = None,
    budgets: Sequence[float] = (CHINCHILLA_FLOPS,),
    plan_options: Mapping[str, Any] | None = None,
    level: float = 0.9,
    figures_dir: str | Path | None = None,
    title: str | None = None,
    commands: Sequence[str] = (),
    curves: pd.DataFrame | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    answer: Sequence[str] = (),
    trained: Sequence[TrainedRun] = (),
    fit_curves: bool = False,
    schedule: str | None = None,
) -> ReportResult:
    """Fit (unless given a fit), check on held-out runs, plan, draw and write the report.

    Parameters
    ----------
    runs
        Validated runs, or a path :func:`scalinglab.runs.load_runs` reads (a table or a store).
    out
        Where to write the HTML page.
    fit
        A fit (or the path of a fit.json) to draw instead of fitting here.
    holdout_fit
        With ``fit``: a check fit made elsewhere, with its hold-out report, used instead of
        refitting ``fit`` without the largest-compute runs here.
    law, law_options, bootstrap, seed
        What to fit when no fit is given: the law, its options, bootstrap resamples, seed.
    holdout_top, holdout_above
        Which runs the check fit leaves out: the top fraction by compute, or every run above a
        FLOP count. Both ``None``: no check.
    budgets
        Budgets in FLOP to plan (default: Chinchilla's 5.76·10^23).
    plan_options
        Options of :func:`scalinglab.plan.allocate` (``gpu``, ``mfu``, ``count``,
        ``price_per_gpu_hour``, ``pue``, ...).
    level
        Level of the bands and plan intervals.
    figures_dir
        Also write every figure there as PNG and SVG.
    title, commands
        Page title; shell commands that reproduce the page.
    curves
        Loss curves of the runs (``Store.curves()``), drawn when given.
    progress
        Called as ``progress(stage, done, total)`` while the bootstrap runs.
    answer, trained
        Sentences the page leads with, and runs planned from the fit then trained (their
        predictions against their measured losses); see :func:`build_content`.
    fit_curves
        ``runs`` are training curves (a store's path reads every stored checkpoint): fit them
        by the procedure ``curves`` (the Chinchilla law on the checkpoints the schedule makes
        valid), check by holding out the run ends above the held-out threshold and fitting
        every checkpoint at or below it, and draw the run ends (see
        :mod:`scalinglab.report.curvefit`).
    schedule
        With ``fit_curves``: the schedule reading for every run (``"decay"``, ``"constant"``,
        ``"shared"``); default: each run's own.

    Raises
    ------
    scalinglab.runs.RunsError, scalinglab.fitting.FitError
        Unusable runs; a fit that cannot be made.
    scalinglab.procedures.ProcedureError
        ``fit_curves`` with a fit, a law or its options (the procedure sets them); a
        ``schedule`` without ``fit_curves``, or unknown.
    scalinglab.outputs.OutputError
        ``out`` or ``figures_dir`` cannot be written, or is one of the inputs or a store;
        checked before any work.
    """
    inputs = [p for p in (runs, fit) if isinstance(p, str | Path)]
    check_output(out, field="out", inputs=inputs)
    if figures_dir is not None:
        check_output(figures_dir, field="figures", inputs=inputs, folder=True)
    _check_curve_options(fit_curves, schedule, fit, holdout_fit, law, law_options)
    table = as_runs(runs, curves=fit_curves)
    given = load_fit(fit) if isinstance(fit, str | Path) else fit
    with warnings.catch_warnings():
        # Every FitWarning is also kept in Fit.warnings, which the page and the CLI show once.
        warnings.simplefilter("ignore", FitWarning)
        if fit_curves:
            main, check, table = curve_fits(
                table,
                schedule=schedule,
                bootstrap=bootstrap,
                seed=seed,
                holdout_top=holdout_top,
                holdout_above=holdout_above,
                level=level,
            )
        elif holdout_fit is not None and given is not None:
            main, check = given, holdout_fit
        else:
            main, check, table = _fits(
                table,
                given,
                law,
                law_options,
                bootstrap,
                seed,
                holdout_top,
                holdout_above,
                progress,
            )

    content = build_content(
        table,
        main,
        holdout_fit=check,
        budgets=tuple(budgets),
        plan_options=plan_options,
        level=level,
        title=title or f"Scaling-law report: {Path(str(table.source)).name}",
        commands=commands,
        curves=curves,
        answer=answer,
        trained=trained,
    )
    figures: list[ReportFigure] = make_figures(content)
    svgs = {f.name: figure_bytes(f, "svg") for f in figures}
    written: tuple[Path, ...] = ()
    if figures_dir is not None:
        rendered = {(name, "svg"): data for name, data in svgs.items()}
        written = tuple(save_figures(figures, figures_dir, rendered=rendered))
    path = write_report(content, out, figures, svgs={k: v.decode("utf-8") for k, v in svgs.items()})
    return ReportResult(path, content, main, check, written)


def _check_curve_options(
    fit_curves: bool,
    schedule: str | None,
    fit: Fit | str | Path | None,
    holdout_fit: Fit | None,
    law: str,
    law_options: Mapping[str, Any] | None,
) -> None:
    if not fit_curves:
        if schedule is not None:
            raise ProcedureError(
                "schedule applies to a fit of training curves (fit_curves)", field="schedule"
            )
        return
    if fit is not None or holdout_fit is not None:
        raise ProcedureError(
            "fit_curves fits the training curves here: give no fit", field="fit_curves"
        )
    if law != "chinchilla" or law_options:
        raise ProcedureError(
            "fit_curves fits by the procedure curves, which sets the law (chinchilla): give no "
            "law or law options",
            field="law",
        )
    if schedule is not None:
        check_schedule(schedule)


def _fits(
    table: Runs,
    given: Fit | None,
    law: str,
    law_options: Mapping[str, Any] | None,
    bootstrap: int,
    seed: int,
    holdout_top: float | None,
    holdout_above: float | None,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[Fit | None, Fit | None, Runs]:
    """The fit drawn (given or made on every run) and the check fit that holds runs out; no
    fit when there are too few runs for the law (a few imported runs), so the page shows the
    runs and their curves and says why."""
    if given is None:
        try:
            main = fitting.fit(
                law,
                table,
                law_options=law_options,
                bootstrap=bootstrap,
                seed=seed,
                progress=progress,
            )
        except FitError as exc:
            if exc.field != "runs":  # only "fewer runs than the law has parameters"
                raise
            note = f"no fit: {exc}; the page shows the runs and their curves"
            return (
                None,
                None,
                Runs(table.frame, table.param_basis, table.source, (*table.notes, note)),
            )
        if {"params", "tokens"} <= set(main.law_object.inputs):
            # As `scalinglab fit` does: the plans on the page split budgets with the fit whose
            # N_opt agrees best with the IsoFLOP minima measured in the runs, or refuse.
            main, _ = with_planner(main, table, bootstrap=bootstrap, seed=seed)
    else:
        main = given
    check = None
    if (holdout_top is not None or holdout_above is not None) and not main.holdout:
        try:
            check = refit(
                main,
                table,
                bootstrap=min(bootstrap, 100) if bootstrap else 0,
                seed=seed,
                holdout_top=holdout_top,
                holdout_above=holdout_above,
            )
        except FitError as exc:  # too few runs left, nothing above the threshold...
            note = f"no held-out check: {exc}"
            table = Runs(table.frame, table.param_basis, table.source, (*table.notes, note))
    return main, check, table
