"""Resumed jobs: the segments of one training job joined into one curve.

A job resumed from a checkpoint shows up in trackers as several runs (W&B names them
``<job>-run-001``, ``<job>-run-002``, ...). Segments are matched by a regular expression with a
``job`` group (and an optional ``segment`` group that orders them; else they are ordered by
their first step). When a segment starts at or before the last step of those before it, the
job was rewound to a checkpoint: the earlier points from that step on are dropped (the later
segment wins), and the overlap is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from scalinglab.importers.logs import LogImportError, Series

__all__ = ["WANDB_SEGMENTS", "Overlap", "Stitched", "compile_pattern", "job_of", "stitch"]

WANDB_SEGMENTS = r"^(?P<job>.+)-run-(?P<segment>\d+)$"


@dataclass(frozen=True)
class Overlap:
    """Points of an earlier segment replaced by a later one (steps ``first`` to ``last``)."""

    replaced: str
    by: str
    points: int
    first: int
    last: int

    def describe(self) -> str:
        """One line, for the import report."""
        return (
            f"{self.points} points of {self.replaced} (steps {self.first}-{self.last}) "
            f"replaced by {self.by}"
        )


@dataclass(frozen=True)
class Stitched:
    """One job's series of one metric, joined from its segments (in order)."""

    series: Series
    segments: tuple[str, ...]
    overlaps: tuple[Overlap, ...]


def compile_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The segment pattern (``None`` or ``""``: no stitching); it must have a ``job`` group."""
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise LogImportError(
            f"--stitch {pattern!r}: not a regular expression ({exc})", field="stitch"
        ) from None
    if "job" not in compiled.groupindex:
        raise LogImportError(
            f"--stitch {pattern!r} needs a named group (?P<job>...) for the job's name",
            field="stitch",
        )
    return compiled


def job_of(run: str, pattern: re.Pattern[str] | None) -> tuple[str, int | None]:
    """``(job, segment number)`` of a run name; a name the pattern does not match is its own
    job, with no segment number."""
    match = pattern.fullmatch(run) if pattern is not None else None
    if match is None:
        return run, None
    segment = match.groupdict().get("segment")
    return match.group("job"), int(segment) if segment and segment.isdigit() else None


def _sorted(series: Series) -> Series:
    """Points in axis order; of points logged twice at one step, the last logged wins."""
    x = series.x
    # Reverse, then a stable unique keeps the last occurrence of each step.
    _, first_from_end = np.unique(x[::-1], return_index=True)
    keep = np.sort(len(x) - 1 - first_from_end)
    order = keep[np.argsort(x[keep], kind="stable")]
    return Series(
        series.run,
        series.metric,
        None if series.steps is None else series.steps[order],
        series.values[order],
        None if series.tokens is None else series.tokens[order],
    )


def stitch(job: str, segments: list[tuple[int | None, Series]]) -> Stitched:
    """Join one job's segments of one metric.

    Parameters
    ----------
    job
        The job's name (the joined series carries it).
    segments
        ``(segment number or None, series)``: numbered segments are joined in number order,
        the others by first step.
    """
    numbers = {s.run: n for n, s in segments}
    ordered = sorted(
        (_sorted(s) for _, s in segments),
        key=lambda s: (
            numbers[s.run] if numbers[s.run] is not None else float("inf"),
            int(s.x[0]) if len(s) else 0,
            s.run,
        ),
    )
    steps: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    values: list[np.ndarray] = []
    owners: list[str] = []
    overlaps: list[Overlap] = []
    has_steps = all(s.steps is not None for s in ordered)
    has_tokens = all(s.tokens is not None for s in ordered)
    for seg in ordered:
        if not len(seg):
            continue
        start = seg.x[0]
        # Drop what earlier segments logged from this segment's first step on.
        for i in range(len(values)):
            x = steps[i] if has_steps else tokens[i]
            cut = int(np.searchsorted(x, start, side="left"))
            if cut < len(x):
                overlaps.append(Overlap(owners[i], seg.run, len(x) - cut, int(x[cut]), int(x[-1])))
                steps[i], values[i] = steps[i][:cut], values[i][:cut]
                if has_tokens:
                    tokens[i] = tokens[i][:cut]
        steps.append(seg.steps if has_steps else np.empty(0, np.int64))
        tokens.append(seg.tokens if has_tokens else np.empty(0, np.int64))
        values.append(seg.values)
        owners.append(seg.run)
    joined = Series(
        job,
        ordered[0].metric,
        np.concatenate(steps) if has_steps else None,
        np.concatenate(values),
        np.concatenate(tokens) if has_tokens else None,
    )
    return Stitched(joined, tuple(s.run for s in ordered), tuple(overlaps))
