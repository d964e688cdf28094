"""Reports: publication-quality figures and one self-contained HTML page of a scaling study.

- :func:`build_report`: runs (and optionally a fit) → fit, held-out check, plan, figures, page;
- :func:`build_content`: the values a report shows (:mod:`.values`, :mod:`.tables`);
  :func:`make_figures` draws them and :func:`write_report` writes the page;
- :class:`TrainedRun`: a run planned from a fit then trained, drawn against its prediction;
"""

from scalinglab.report.build import CHINCHILLA_FLOPS, ReportResult, build_report
from scalinglab.report.content import build_content
from scalinglab.report.figures import ReportFigure, figure_bytes, make_figures, save_figures
from scalinglab.report.html import render_html, write_report
from scalinglab.report.values import ReportContent, TrainedRun

__all__ = [
    "CHINCHILLA_FLOPS",
    "ReportContent",
    "ReportFigure",
    "ReportResult",
    "TrainedRun",
    "build_content",
    "build_report",
    "figure_bytes",
    "make_figures",
    "render_html",
    "save_figures",
    "write_report",
]
