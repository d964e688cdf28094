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
    A constant learning rate: every checkpoint is the end of a constant-rate run of that length
    (but not a WSD run's stable phase, see below).
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

Where the schedule ends. A decaying run whose last checkpoint lies before its schedule's end
(a run killed or still running; the column :data:`SCHEDULE_TOKENS`, which a store fills, says
where the schedule ends) has no run end: its last checkpoint was taken at a learning rate that had
not decayed yet, so it is not the loss of a run of that length, and under the ``decay`` reading
such a run contributes nothing (a note names it).

A WSD run's stable phase (up to the column :data:`STABLE_TOKENS`, which a store fills for the
WSD runs it trained) holds constant-rate checkpoints, but they are not comparable with the run's
cooldown ends, which sit below the stable curve by the cooldown's gain (Hägele et al. 2024): a
fit of both would put the law between the two. So a WSD run gives only its run ends (the end of
its trunk and of each cooldown) under every reading: under ``constant`` and ``shared`` its stable
phase and its trunk's own cooldown are left out, and a note says so. On the demo store's backtest
(``scalinglab backtest scalinglab.db --sweep demo -p curves -p plain --schedule constant``),
reading every WSD checkpoint as constant erred by 5.8–5.9% against 2.1–2.6% for the run ends
alone; correcting the stable phase by one fitted cooldown gain instead erred by 4.0–4.2% (the gain
varies across runs about as much as its size), so the stable phase is left out.

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
    "SCHEDULE_TOKENS",
    "STABLE_TOKENS",
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
# The tokens at which each point's run's learning-rate schedule ends (a store fills it; NaN:
# unknown, the run's last point is taken for its end). A run whose last point lies before it
# (killed, or still running) has no run end.
SCHEDULE_TOKENS = "schedule_tokens"
# The last tokens of a WSD run's stable phase (a store fills it for the WSD runs it trained;
# NaN: not WSD, or unknown): its checkpoints after it and before its end are in its cooldown.
STABLE_TOKENS = "stable_tokens"
# A last checkpoint within this fraction of its schedule's end ends it (evaluations are logged
# every few steps, and a schedule's length given in steps converts to tokens with rounding).
_END_RTOL = 0.01
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


def _ends(fr: pd.DataFrame, last: pd.Series, sched: pd.Series) -> pd.Series:
    """Which points end a training run: its run's last (``last``: its tokens) or marked so by
    the table (a WSD cooldown), but with a decaying schedule reading (``sched``) not before the
    schedule's end (a constant-rate run ends wherever it stops)."""
    at_end = fr["tokens"] >= last
    if RUN_END in fr:
        at_end |= fr[RUN_END].astype(bool)
    return at_end & ~((sched == "decay") & _before_schedule_end(fr))


def _known(fr: pd.DataFrame, column: str) -> pd.Series:
    """Where ``column`` holds a finite number (False everywhere without the column)."""
    if column not in fr:
        return pd.Series(False, index=fr.index)
    return pd.Series(np.isfinite(pd.to_numeric(fr[column], errors="coerce").astype(float)))


def _before_schedule_end(fr: pd.DataFrame) -> pd.Series:
    """Points before their schedule's end (:data:`SCHEDULE_TOKENS`, where known)."""
    if SCHEDULE_TOKENS not in fr:
        return pd.Series(False, index=fr.index)
    end = pd.to_numeric(fr[SCHEDULE_TOKENS], errors="coerce").astype(float)
    return fr["tokens"] < end * (1 - _END_RTOL)


def mark_run_ends(runs: Runs, *, schedule: str | None = None) -> Runs:
    """``runs`` with :data:`RUN_END` and :data:`RUN_TOKENS` set from the whole curves.

    A point ends a run when it is its run's last (most tokens) or the table already marks it
    so (a WSD cooldown), unless its run is read as decaying (``schedule``, as
    :func:`curve_points` takes it) and it lies before its schedule's end
    (:data:`SCHEDULE_TOKENS`: such a run, killed or still running, has no end); each point's
    :data:`RUN_TOKENS` is its run's last tokens. Marked before a table is cut at a compute,
    they keep their meaning in the cut table: a run whose end lies above the cut has no end in
    it, so with a decaying schedule none of its points is evidence (:func:`curve_points` leaves
    them all out), and the early cut stays a fraction of the whole run.

    Raises
    ------
    ProcedureError
        Unknown schedule (the row, when it comes from the column).
    """
    fr = runs.frame
    run = _run_ids(fr)
    last = fr.groupby(run, sort=False)["tokens"].transform("max")
    at_end = _ends(fr, last, _schedules(runs, run, schedule)[0])
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
    at_end = _ends(fr, last, sched)
    short = (sched == "decay") & _before_schedule_end(fr) & (fr["tokens"] >= last)
    # A WSD run with a known stable phase gives only its run ends under every reading.
    wsd = (sched != "decay") & ~at_end & _known(fr, STABLE_TOKENS)
    decayed = (sched == "decay") & ~at_end
    early = (sched != "decay") & ~at_end & ~wsd & (fr["tokens"] < early_fraction * last)
    notes = []
    if short.any():
        named = ", ".join(
            f"{r} ({t:.3g} of {e:.3g} tokens)"
            for r, t, e in zip(
                run[short], fr["tokens"][short], fr[SCHEDULE_TOKENS][short], strict=True
            )
        )
        notes.append(
            f"no run end for {_count(run[short], 'with a decaying schedule')} whose last "
            "checkpoint lies before the schedule's end (killed, or still running): the rate "
            f"had not decayed there, so they contribute nothing: {named}"
        )
    if decayed.any():
        notes.append(
            f"left out {int(decayed.sum())} checkpoints before their run's end: the learning rate "
            "decays to the end of each run, so only the last point is a fully decayed run"
        )
    if wsd.any():
        notes.append(
            f"left out {int(wsd.sum())} checkpoints of {_count(run[wsd], 'with a WSD schedule')} "
            "before their run's end, read as "
            f"{'/'.join(sorted(set(sched[wsd])))}: the stable phase sits above the cooldown "
            "ends by the cooldown's gain, so the two are not comparable; their run ends (the "
            "trunk's and each cooldown's) are kept"
        )
    if early.any():
        notes.append(
            f"left out {int(early.sum())} checkpoints below {early_fraction:.0%} of their run's "
            "tokens (warmup and batch ramp follow the schedule, not the law)"
        )
    keep = ~(decayed | early | wsd).to_numpy()
    unended = set(run[decayed]) - set(run[keep]) - set(run[short])
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
