"""The report's fits of training curves (``scalinglab report --store DB --curves``).

The law is fitted by the procedure ``curves`` on every checkpoint the schedule makes valid, as
``scalinglab fit DB --curves`` does. Its held-out check must see the curves too: it holds out the
run ends above the report's held-out threshold and fits every checkpoint at or below it. That is
one cut of the rolling-origin backtest of the procedure ``curves``
(:func:`scalinglab.procedures.backtest`), which marks where each run ends on the whole curves
before cutting them, so that a decaying run whose end lies above the cut gives nothing below it.
The page draws the run ends (each run's end and each WSD cooldown: a store's final points).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from scalinglab.fitting import Fit, FitError
from scalinglab.fitting.uncertainty import holdout_split
from scalinglab.procedures import BacktestError, ProcedureError, backtest, fit_procedure
from scalinglab.procedures.curves import (
    RUN_END,
    RUN_TOKENS,
    SCHEDULE_TOKENS,
    STABLE_TOKENS,
    mark_run_ends,
)
from scalinglab.runs import Runs

__all__ = ["curve_fits"]

_PROCEDURE = "curves"


def curve_fits(
    curves: Runs,
    *,
    schedule: str | None,
    bootstrap: int,
    seed: int,
    holdout_top: float | None,
    holdout_above: float | None,
    level: float,
) -> tuple[Fit | None, Fit | None, Runs]:
    """The fit of the procedure ``curves`` on ``curves``, its held-out check, and the run ends.

    Parameters
    ----------
    curves
        Training curves: rows sharing a ``run_id`` are one run's checkpoints (a store's, read
        with ``curves=True``).
    schedule
        The schedule reading for every run (see :mod:`scalinglab.procedures.curves`); default:
        each run's own.
    bootstrap, seed
        Bootstrap resamples of the fit (at most 100 for the check) and their seed.
    holdout_top, holdout_above
        The check holds out the run ends above this threshold (the top fraction of the run ends
        by compute, or a FLOP count), as the report's check of final points does. Both
        ``None``: no check.
    level
        Level of the check's prediction intervals.

    Returns
    -------
    (fit, check, ends)
        The fit (``None`` when there are too few runs for the law: the notes say why), the
        check fit with its ``holdout`` report (``None`` when none was asked or possible), and
        the run ends the page draws, whose notes say how the curves were read.

    Raises
    ------
    scalinglab.procedures.ProcedureError, scalinglab.fitting.FitError
        An unknown schedule; a fit that cannot be made for another reason than too few runs.
    """
    marked = mark_run_ends(curves, schedule=schedule)
    helper = [RUN_END, RUN_TOKENS, SCHEDULE_TOKENS, STABLE_TOKENS]
    ends = marked.subset(marked.frame[RUN_END].to_numpy(bool))
    ends = replace(ends, frame=ends.frame.drop(columns=helper, errors="ignore"))
    notes: list[str] = []
    try:
        pf = fit_procedure(_PROCEDURE, curves, bootstrap=bootstrap, seed=seed, schedule=schedule)
    except FitError as exc:
        if exc.field != "runs":  # only "fewer runs than the law has parameters"
            raise
        notes.append(f"no fit of the training curves: {exc}; the page shows the runs")
        return None, None, replace(ends, notes=(*ends.notes, *notes))
    notes += [f"training curves (procedure {_PROCEDURE}): {note}" for note in pf.curve_notes]
    check = None
    if holdout_top is not None or holdout_above is not None:
        try:
            train = holdout_split(ends, holdout_above, holdout_top)[0]
            check = _check(curves, train, level, schedule=schedule, bootstrap=bootstrap, seed=seed)
        except (FitError, BacktestError, ProcedureError) as exc:
            notes.append(f"no held-out check: {exc}")
    return pf.fit, check, replace(ends, notes=(*ends.notes, *notes))


def _check(curves: Runs, train: Runs, level: float, **options: Any) -> Fit:
    """One cut of the curve backtest at the largest run end of ``train`` (the run ends at or
    below the threshold), as a fit with a hold-out report."""
    cut = float(train.column("flops").max())
    result = backtest(
        curves,
        [_PROCEDURE],
        cuts=[cut],
        level=level,
        allocation=False,
        **options | {"bootstrap": min(options["bootstrap"], 100)},
    )
    pf = result.fitted.get(("all", cut, _PROCEDURE))
    if pf is None:
        raise FitError(str(result.fits["why"].iloc[0]), field="runs")
    p = result.predictions
    rel = p["rel_error"].to_numpy(float)
    holdout: dict[str, Any] = {
        "threshold_flops": cut,
        "n_train": len(train),
        "n_holdout": len(p),
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "mean_rel_error": float(np.mean(rel)),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
        "coverage": float(p["covered"].mean()),
        "interval": "prediction",
        "curves": {
            "procedure": _PROCEDURE,
            "points": pf.n_runs,
            "notes": list(pf.curve_notes),
        },
        "runs": [
            {
                "params": row.params,
                "tokens": row.tokens,
                "flops": row.flops,
                "loss": row.loss,
                "predicted": row.predicted,
                "rel_error": row.rel_error,
                "interval": [row.lo, row.hi],
            }
            for row in p.itertuples()
        ],
    }
    return replace(pf.fit, holdout=holdout)
