"""Training curves as evidence: which checkpoints a fit may use, and how much each weighs.

A training curve (the rows of a runs table that share a ``run_id``, one per checkpoint) holds
many points, but a point in the middle of a curve is the loss of a run trained to that many
tokens *with its own schedule* only when the schedule makes it so. The schedule is a property
of the runs: a ``schedule`` column (per row) or the ``schedule`` argument says which.

``decay``
    The learning rate decays to the end of each run (cosine, linear, a WSD cooldown stored as its
    own run): only the last point of a run is a fully decayed run; the middle of the curve sits
    above the loss a run of that length would reach. One point per run.
``constant``
    A constant learning rate (or a WSD stable phase read as such): every checkpoint is the end
    of a constant-rate run of that length.
``shared``
    Every run follows the same schedule in tokens (GPT-3, Pythia): points at equal tokens are
    comparable across runs, so the law's data term describes that schedule. Every checkpoint is
    kept, and the fit predicts curves trained the same way, not runs annealed to each length.

A store holds the schedule each run was trained with, by the trainer's or the importer's name
(``wsd``, ``cosine``, ``linear``, ``constant``, ...): a decaying one reads as ``decay`` (a WSD
trunk's end and each of its cooldowns, kept as points of their own with the column
:data:`RUN_END`, are then the runs), a constant one as ``constant``. A run without one reads as
``decay`` (:data:`DEFAULT_SCHEDULE`), the safe reading, unless ``schedule`` is given; the notes
say which reading each run got and where it came from.

The earliest tokens (warmup, batch-size ramp) follow the schedule, not the law: points below
``early_fraction`` of a run's last tokens are dropped. Long curves are thinned to at most
``max_points`` per run (the median of log-spaced token bins, which also averages out read-out
or evaluation noise), and each run weighs the same in the fit however many points it keeps, so
one long curve does not outvote many runs (Choshen et al. 2024, "A Hitchhiker's Guide to
Scaling Law Estimation", find intermediate checkpoints and an early cut help extrapolation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scalinglab.procedures.errors import ProcedureError
from scalinglab.runs import Runs

__all__ = [
    "CURVE_WEIGHT",
    "DEFAULT_SCHEDULE",
    "RUN_END",
    "RUN_TOKENS",
    "SCHEDULES",
    "check_schedule",
    "curve_points",
    "mark_run_ends",
]

SCHEDULES = ("decay", "constant", "shared")
# The column of the returned runs holding each point's weight (its run sums to 1).
CURVE_WEIGHT = "curve_weight"
# A boolean column marking points that end a training run of their own although their run_id
# goes on (a WSD cooldown branched from a longer run, as a store holds it).
RUN_END = "run_end"
# A column holding the tokens of each point's run at its end, the whole run's length: set by
# :func:`mark_run_ends` before a table is cut (a backtest's compute cut), so that a cut run's
# last visible checkpoint is not taken for its end.
RUN_TOKENS = "run_tokens"
_NUMERIC = ("params", "tokens", "flops", "loss", "unique_tokens")


# What the schedules a trainer or an importer stores (ours: ``wsd``, ``cosine``; Hugging Face's
# and OLMo's names) say about the middle of a curve. A schedule that decays to the end of the
# run makes only its end a run of that length; one that does not depend on the run's length
# (constant, or an inverse square root) makes every checkpoint one.
_STORED = {
    "cosine": "decay",
    "cosine_with_warmup": "decay",
    "cosine_with_min_lr": "decay",
    "linear": "decay",
    "linear_with_warmup": "decay",
    "polynomial": "decay",
    "wsd": "decay",  # a WSD trunk's end and each cooldown; the stable phase is not annealed
    "constant": "constant",
    "constant_with_warmup": "constant",
    "inverse_sqrt": "constant",
}
DEFAULT_SCHEDULE = "decay"


def _count(runs: pd.Series, what: str) -> str:
    n = runs.nunique()
    return f"{n} run{'s' * (n != 1)} {what}"


def check_schedule(schedule: str) -> None:
    """Refuse a ``schedule`` that is not one of :data:`SCHEDULES` (naming what a stored
    schedule's name reads as).

    Raises
    ------
    ProcedureError
        Not one of :data:`SCHEDULES`.
    """
    if schedule not in SCHEDULES:
        hint = _STORED.get(str(schedule).lower())
        raise ProcedureError(
            f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}"
            + (f" (a {schedule} schedule reads as {hint})" if hint else ""),
            field="schedule",
        )


def _schedules(runs: Runs, run: pd.Series, schedule: str | None) -> tuple[pd.Series, list[str]]:
    """Each row's schedule reading and a note saying where it came from (none when the table's
    own column, in readings, said it all)."""
    fr = runs.frame
    stored = fr["schedule"] if "schedule" in fr else pd.Series(np.nan, index=fr.index)
    known = stored.notna() & (stored.astype(str).str.strip() != "")
    text = stored.astype(str).str.strip().str.lower()
    if schedule is not None:
        check_schedule(schedule)
        differ = known & (text != schedule)
        notes = []
        if differ.any():
            was = ", ".join(sorted(set(text[differ])))
            notes.append(
                f"schedule {schedule} for every run as given, over the table's own for "
                f"{_count(run[differ], f'({was})')}"
            )
        return pd.Series(schedule, index=fr.index), notes
    reading = text.map(lambda t: t if t in SCHEDULES else _STORED.get(t))
    bad = known & reading.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ProcedureError(
            f"row {row + 1}: schedule {stored.iloc[row]!r} is not one of "
            f"{', '.join(SCHEDULES)} nor a schedule scalinglab knows "
            f"({', '.join(_STORED)}); say how to read it with schedule= (--schedule)",
            field="schedule",
        )
    parts = [
        _count(run[known & (text == name)], f"{name} → {reading[text == name].iloc[0]}")
        for name in sorted(set(text[known & ~text.isin(SCHEDULES)]))
    ]
    if (~known).any():
        where = "without one" if known.any() else "(the table has none)"
        parts.append(
            _count(run[~known], f"{where} → {DEFAULT_SCHEDULE}, the default (--schedule sets it)")
        )
    notes = [f"schedule from the table: {'; '.join(parts)}"] if parts else []
    return reading.where(known, DEFAULT_SCHEDULE), notes


def _run_ids(fr: pd.DataFrame) -> pd.Series:
    return (
        fr["run_id"].astype(str)
        if "run_id" in fr
        else pd.Series(fr.index.astype(str), index=fr.index)
    )


def mark_run_ends(runs: Runs) -> Runs:
    """``runs`` with :data:`RUN_END` and :data:`RUN_TOKENS` set from the whole curves.

    A point ends a run when it is its run's last (most tokens) or the table already marks it
    so (a WSD cooldown); each point's :data:`RUN_TOKENS` is its run's last tokens. Marked
    before a table is cut at a compute, they keep their meaning in the cut table: a run whose
    end lies above the cut has no end in it, so with a decaying schedule none of its points is
    evidence (:func:`curve_points` leaves them all out), and the early cut stays a fraction of
    the whole run.
    """
    fr = runs.frame
    run = _run_ids(fr)
    last = fr.groupby(run, sort=False)["tokens"].transform("max")
    at_end = fr["tokens"] >= last
    if RUN_END in fr:
        at_end |= fr[RUN_END].astype(bool)
    return Runs(
        frame=fr.assign(**{RUN_END: at_end.to_numpy(), RUN_TOKENS: last.to_numpy(float)}),
        param_basis=runs.param_basis,
        source=runs.source,
        notes=runs.notes,
    )


def curve_points(
    runs: Runs,
    *,
    schedule: str | None = None,
    early_fraction: float = 0.1,
    max_points: int = 16,
) -> tuple[Runs, list[str]]:
    """The checkpoints of ``runs``' curves a fit may use, thinned and weighted.

    Parameters
    ----------
    runs:
        Rows sharing a ``run_id`` are checkpoints of one run (without a ``run_id`` column every
        row is a run of its own, and nothing changes but the weight column).
    schedule:
        ``"decay"``, ``"constant"`` or ``"shared"`` for every run, over the table's own (see
        the module docstring). Default: the ``schedule`` column (a reading, or a stored
        schedule's name such as ``"wsd"`` or ``"cosine"``), and ``"decay"`` for a run without
        one (the safe reading: only the end of each run counts).
    early_fraction:
        Drop points with fewer tokens than this fraction of their run's last point, in [0, 1).
    max_points:
        Thin each run to at most this many points (≥ 1).

    Returns
    -------
    (Runs, notes)
        The kept points with a :data:`CURVE_WEIGHT` column (1 / the points kept of their run),
        and notes saying what was left out or merged and why, and which schedule reading the
        runs got where the table did not give it as a reading.

    Raises
    ------
    ProcedureError
        Unknown schedule (the row, when it comes from the column), options out of range.
    """
    if not 0 <= early_fraction < 1:
        raise ProcedureError(
            f"early_fraction must lie in [0, 1), got {early_fraction!r}", field="early_fraction"
        )
    if not max_points >= 1:
        raise ProcedureError(f"max_points must be >= 1, got {max_points!r}", field="max_points")
    fr = runs.frame
    run = _run_ids(fr)
    sched, schedule_notes = _schedules(runs, run, schedule)
    # A table cut at a compute (mark_run_ends) knows each run's whole length; else the
    # table's last point of a run is its end.
    if RUN_TOKENS in fr:
        last = fr[RUN_TOKENS].astype(float)
    else:
        last = fr.groupby(run, sort=False)["tokens"].transform("max")
    at_end = fr["tokens"] >= last
    if RUN_END in fr:
        at_end |= fr[RUN_END].astype(bool)
    decayed = (sched == "decay") & ~at_end
    early = (sched != "decay") & ~at_end & (fr["tokens"] < early_fraction * last)
    notes = []
    if decayed.any():
        notes.append(
            f"left out {int(decayed.sum())} checkpoints before their run's end: the learning rate "
            "decays to the end of each run, so only the last point is a fully decayed run"
        )
    if early.any():
        notes.append(
            f"left out {int(early.sum())} checkpoints below {early_fraction:.0%} of their run's "
            "tokens (warmup and batch ramp follow the schedule, not the law)"
        )
    keep = ~(decayed | early).to_numpy()
    unended = set(run[decayed]) - set(run[keep])
    if unended:
        notes.append(
            f"{_count(pd.Series(sorted(unended)), 'with a decaying schedule')} contribute nothing: "
            "their end lies beyond the table (a backtest's cut), and the points before it are "
            "not runs of their length"
        )
    fr, run = fr[keep], run[keep]
    parts = []
    merged = 0
    for _, g in fr.groupby(run.to_numpy(), sort=False):
        if len(g) > max_points:
            lt = np.log(g["tokens"].to_numpy(float))
            edges = np.linspace(lt.min(), lt.max(), max_points + 1)
            b = np.clip(np.searchsorted(edges, lt, side="right") - 1, 0, max_points - 1)
            numeric = [c for c in _NUMERIC if c in g]
            bins = g.groupby(b, sort=True)
            thinned = pd.concat(
                [bins[numeric].median(), bins[[c for c in g if c not in numeric]].last()], axis=1
            )[list(fr.columns)]
            merged += len(g) - len(thinned)
            g = thinned
        parts.append(g.assign(**{CURVE_WEIGHT: 1.0 / len(g)}))
    out = pd.concat(parts, ignore_index=True)
    if merged:
        notes.append(
            f"merged {merged} checkpoints into at most {max_points} per run (median of "
            "log-spaced token bins)"
        )
    notes += schedule_notes
    if "step" in out:
        out["step"] = out["step"].astype("int64")
    table = Runs(
        frame=out,
        param_basis=runs.param_basis,
        source=runs.source,
        notes=(*runs.notes, *notes),
    )
    return table, notes
