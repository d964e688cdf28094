"""Publication-quality figures of a scaling study, drawn from plain values: all of them, and files.

Every figure function takes the plain, typed values of :mod:`scalinglab.report.values` and
returns a :class:`ReportFigure`: a :class:`matplotlib.figure.Figure` with its name, title,
caption and the labels of its points (the HTML report turns those into tooltips). They live by
job in :mod:`.frontier` (compute, the plan and its check, allocation) and :mod:`.diagnostics`
(slices, IsoFLOP profiles, residuals, bootstrap, training curves), drawn with the pieces of
:mod:`.style`; here :func:`make_figures` gathers them and :func:`figure_bytes` /
:func:`save_figures` render them.

Nothing here touches global matplotlib state. Figures are made with the object-oriented API
(``matplotlib.figure.Figure``, never ``pyplot``), so the user's backend is left alone and nothing
accumulates in pyplot's figure manager; the house style is applied with ``matplotlib.rc_context``
around drawing and saving only.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from scalinglab.outputs import check_output, write_atomic
from scalinglab.report.diagnostics import (
    bootstrap_figure,
    isoflop_figure,
    residuals_figure,
    separate_effects_figure,
    training_curves_figure,
)
from scalinglab.report.frontier import (
    allocation_figure,
    loss_vs_compute_figure,
    plan_check_figure,
)
from scalinglab.report.style import FORMATS, STYLE, ReportFigure
from scalinglab.report.values import ReportContent

__all__ = [
    "STYLE",
    "ReportFigure",
    "allocation_figure",
    "bootstrap_figure",
    "figure_bytes",
    "isoflop_figure",
    "loss_vs_compute_figure",
    "make_figures",
    "plan_check_figure",
    "residuals_figure",
    "save_figures",
    "separate_effects_figure",
    "training_curves_figure",
]


def make_figures(content: ReportContent) -> list[ReportFigure]:
    """Every figure the content supports, in the report's order."""
    made = [
        plan_check_figure(content),
        loss_vs_compute_figure(content),
        separate_effects_figure(content),
        isoflop_figure(content),
        residuals_figure(content),
        bootstrap_figure(content),
        allocation_figure(content),
        training_curves_figure(content),
    ]
    return [f for f in made if f is not None]


def figure_bytes(figure: ReportFigure | Figure, fmt: str, *, salt: str | None = None) -> bytes:
    """Render a figure to ``fmt`` (``"png"`` or ``"svg"``) in memory, in the house style.

    The SVG carries no date and hashes its element ids with ``salt`` (the figure's name by
    default), so two figures rarely share an id (the HTML page prefixes them anyway).
    """
    fig = figure.figure if isinstance(figure, ReportFigure) else figure
    name = figure.name if isinstance(figure, ReportFigure) else "figure"
    if fmt not in FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    buffer = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": "scalinglab"}
    with mpl.rc_context({**STYLE, "svg.hashsalt": salt or name}):
        fig.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def save_figures(
    figures: Iterable[ReportFigure],
    directory: str | Path,
    formats: Sequence[str] = FORMATS,
    *,
    rendered: Mapping[tuple[str, str], bytes] | None = None,
) -> list[Path]:
    """Write every figure as ``<directory>/<name>.<fmt>``; return the paths written.

    ``rendered`` holds bytes already made by :func:`figure_bytes`, keyed by (name, format).
    """
    out = check_output(directory, field="figures", folder=True)
    written = []
    for figure in figures:
        for fmt in formats:
            path = out / f"{figure.name}.{fmt}"
            data = (rendered or {}).get((figure.name, fmt))
            write_atomic(
                path, data if data is not None else figure_bytes(figure, fmt), field="figures"
            )
            written.append(path)
    return written
