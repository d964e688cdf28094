"""One self-contained HTML page: figures inline as SVG, tables, and the commands behind them.

The page loads nothing: no stylesheet, font, script or image comes from elsewhere, and a
Content-Security-Policy forbids the browser to fetch anything, so the report opens the same on
an air-gapped machine, in an e-mail attachment or years later. Figures are inline SVG (sharp at
any zoom, searchable text is not needed since glyphs are paths), with a tooltip naming each run
under the pointer; tables sort on a click and the run table filters as you type.

Every string that can come from a user (run names, groups, paths, notes, commands) goes through
:func:`html.escape` before it reaches the page.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalinglab._version import __version__
from scalinglab.outputs import check_output, write_atomic
from scalinglab.report.figures import ReportFigure, figure_bytes, make_figures
from scalinglab.report.values import ReportContent

__all__ = ["embed_svg", "format_number", "render_html", "write_report"]

_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

_STYLE = """
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#e3e3e6; --accent:#0b5cad; --warn:#8a4b00;
        --warnbg:#fff6e5; --bg:#ffffff; --head:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0;
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1180px; margin:0 auto; padding:28px 24px 60px; }
header h1 { font-size:1.7rem; margin:0 0 4px; }
header p { margin:2px 0; color:var(--muted); }
nav { margin:18px 0 8px; display:flex; flex-wrap:wrap; gap:6px 14px; font-size:.92rem; }
nav a { color:var(--accent); text-decoration:none; }
nav a:hover { text-decoration:underline; }
h2 { font-size:1.25rem; margin:36px 0 10px; padding-bottom:4px;
  border-bottom:1px solid var(--line); }
dl.facts { display:grid; grid-template-columns:repeat(auto-fill,minmax(250px,1fr)); gap:10px;
           margin:18px 0; }
dl.facts div { border:1px solid var(--line); border-radius:8px; padding:10px 12px;
  background:var(--head); }
dl.facts dt { font-size:.8rem; color:var(--muted);
  letter-spacing:.03em; }
dl.facts dd { margin:2px 0 0; font-size:1.08rem; font-weight:600;
  font-variant-numeric:tabular-nums; }
.warnings { background:var(--warnbg); border-left:4px solid #e3a008; padding:8px 14px;
  margin:14px 0;
            color:var(--warn); }
.warnings ul { margin:4px 0; padding-left:20px; }
figure { margin:18px 0 26px; }
figure .svg { width:100%; overflow-x:auto; }
figure svg { max-width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:.92rem; margin-top:4px; max-width:900px; }
figcaption b { color:var(--fg); }
table { border-collapse:collapse; font-size:.9rem; font-variant-numeric:tabular-nums;
  margin:8px 0; }
th, td { padding:4px 10px; border-bottom:1px solid var(--line); text-align:right;
  white-space:nowrap; }
th { background:var(--head); position:sticky; top:0; cursor:pointer; user-select:none; }
th[data-dir="asc"]::after { content:" ▲"; font-size:.7em; }
th[data-dir="desc"]::after { content:" ▼"; font-size:.7em; }
td.text, th.text { text-align:left; }
tr.heldout td { background:#fff1e8; }
.scroll { max-height:560px; overflow:auto; border:1px solid var(--line); border-radius:6px;
          display:inline-block; max-width:100%; }
pre { background:#f4f5f7; border:1px solid var(--line); border-radius:6px; padding:10px 12px;
      overflow-x:auto; font-size:.86rem; }
input.filter { font:inherit; padding:4px 8px; margin:4px 0 6px; width:320px; max-width:100%;
               border:1px solid var(--line); border-radius:5px; }
.muted { color:var(--muted); }
footer { margin-top:40px; color:var(--muted); font-size:.85rem; }
@media print { nav, input.filter { display:none; } .scroll { max-height:none; overflow:visible;
  } }
"""

# Sorting and filtering only; the page works, and reads the same, with scripts off.
_SCRIPT = """
(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "") { var f = parseFloat(v); if (!isNaN(f)) { return f; } }
    return cell.textContent.trim().toLowerCase();
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a) < String(b) ? -1 : (String(a) > String(b) ? 1 : 0);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.addEventListener("click", function () {
        var dir = th.getAttribute("data-dir") === "asc" ? "desc" : "asc";
        heads.forEach(function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir);
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var c = compare(key(r1.cells[col]), key(r2.cells[col]));
          return dir === "asc" ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll("input.filter").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    if (!table) { return; }
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = (!q || r.textContent.toLowerCase().indexOf(q) >= 0) ? "" : "none";
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
"""

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_number(value: Any, digits: int = 4) -> str:
    """Format a number for a table: ``5.76·10²³``, ``0.3478``, ``1,234``; blanks for missing."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, tuple | list) and len(value) == 2:
        lo, hi = value
        if lo is None or hi is None:
            return ""
        return f"[{format_number(lo, digits)}, {format_number(hi, digits)}]"
    if isinstance(value, str):
        return value
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return ""
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    magnitude = abs(x)
    if 1e-3 <= magnitude < 1e5:
        if magnitude >= 10 ** (digits - 1) or (float(x).is_integer() and magnitude >= 10):
            return f"{x:,.0f}"  # 18,091 rather than 1.809e+04
        return f"{x:.{digits}g}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}·10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def _sort_value(value: Any) -> str:
    if isinstance(value, tuple | list) and len(value) == 2 and value[0] is not None:
        value = value[0]
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(float(value)):
        return repr(float(value))
    return ""


def _table(
    frame: pd.DataFrame,
    *,
    table_id: str,
    caption: str | None = None,
    heldout_column: str | None = None,
    digits: int = 4,
) -> str:
    """An HTML table of ``frame``: numbers formatted, raw values kept for sorting, all escaped."""
    columns = [c for c in frame.columns if c != heldout_column]
    text_cols = {
        c
        for c in columns
        if frame[c].map(lambda v: isinstance(v, str) or v is None).all() and len(frame)
    }
    head = "".join(
        f'<th scope="col" class="{"text" if c in text_cols else "num"}">{_esc(c)}</th>'
        for c in columns
    )
    body = []
    held = frame[heldout_column].to_numpy(bool) if heldout_column else np.zeros(len(frame), bool)
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        values = dict(zip(frame.columns, row, strict=True))
        cells = []
        for c in columns:
            v = values[c]
            if c in text_cols:
                cells.append(f'<td class="text">{_esc("" if v is None else v)}</td>')
            else:
                cells.append(
                    f'<td data-v="{_esc(_sort_value(v))}">{_esc(format_number(v, digits))}</td>'
                )
        cls = ' class="heldout"' if held[i] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    cap = f"<caption class='muted'>{_esc(caption)}</caption>" if caption else ""
    return (
        f'<table id="{_esc(table_id)}" class="sortable">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_ID_ATTR = re.compile(r'\bid="([^"]+)"')


def embed_svg(
    svg: str, prefix: str, point_labels: Mapping[str, Sequence[str]] | None = None
) -> str:
    """Make a matplotlib SVG safe to inline next to others, with tooltips on its points.

    Drops the XML prolog, prefixes every element id (and every reference to it) with ``prefix``
    so two figures on one page never resolve each other's clip paths or glyphs, and gives each
    point of the scatter groups named in ``point_labels`` an escaped ``<title>`` (the browser's
    tooltip).
    """
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document")
    svg = svg[start:]
    ids = set(_ID_ATTR.findall(svg))
    for gid, labels in (point_labels or {}).items():
        svg = _add_titles(svg, gid, labels)
    if ids:
        alternation = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
        svg = re.sub(rf'\bid="({alternation})"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
        svg = re.sub(rf"url\(#({alternation})\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
        svg = re.sub(rf'href="#({alternation})"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    # The page sizes figures by CSS; matplotlib's absolute size would overflow narrow screens.
    svg = re.sub(
        r'<svg([^>]*?) width="([^"]*)" height="[^"]*"',
        r'<svg\1 style="width:100%;max-width:\2;height:auto"',
        svg,
        count=1,
    )
    return svg


def _add_titles(svg: str, gid: str, labels: Sequence[str]) -> str:
    """Insert ``<title>`` before each ``<use>`` of group ``gid`` (one per point, in order)."""
    opening = f'<g id="{gid}">'
    start = svg.find(opening)
    if start < 0:
        return svg
    # The group ends at the first </g> that balances it.
    depth, pos = 0, start
    tag = re.compile(r"<g\b[^>]*?(/?)>|</g>")
    end = -1
    for m in tag.finditer(svg, start):
        if m.group(0) == "</g>":
            depth -= 1
        elif not m.group(1):
            depth += 1
        if depth == 0:
            end = m.end()
            break
    if end < 0:
        return svg
    block = svg[start:end]
    uses = list(re.finditer(r"<use\b", block))
    if len(uses) != len(labels):  # never guess which label belongs to which point
        return svg
    pieces, pos = [], 0
    for m, label in zip(uses, labels, strict=True):
        pieces.append(block[pos : m.start()])
        pieces.append(f"<title>{_esc(label)}</title>")
        pos = m.start()
    pieces.append(block[pos:])
    return svg[:start] + "".join(pieces) + svg[end:]


def _figure_html(figure: ReportFigure, index: int, svg: str | None = None) -> str:
    if svg is None:
        svg = figure_bytes(figure, "svg").decode("utf-8")
    body = embed_svg(svg, f"f{index}", figure.point_labels)
    return (
        f'<figure id="{_esc(figure.name)}"><div class="svg" role="img" '
        f'aria-label="{_esc(figure.title)}">{body}</div>'
        f"<figcaption><b>{_esc(figure.title)}.</b> {_esc(figure.caption)}</figcaption></figure>"
    )


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{_esc(anchor)}"><h2>{_esc(title)}</h2>{body}</section>'


def render_html(
    content: ReportContent,
    figures: Sequence[ReportFigure] | None = None,
    *,
    generated: _dt.datetime | None = None,
    svgs: Mapping[str, str] | None = None,
) -> str:
    """Render the whole report as one HTML document (a string).

    Parameters
    ----------
    content
        What to show (see :func:`scalinglab.report.content.build_content`).
    figures
        The figures to embed; by default every figure ``content`` supports.
    generated
        Time stamp printed in the header (default: now, UTC).
    svgs
        Figures already rendered by :func:`~scalinglab.report.figures.figure_bytes`, by name
        (rendering is the slow part: a caller that also saves SVG files renders once).
    """
    if figures is None:
        figures = make_figures(content)
    stamp = (generated or _dt.datetime.now(_dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    sections: list[tuple[str, str, str]] = []
    # The figure of what was planned and then trained belongs with the answer, first.
    leading = {"plan_check"}
    html_of = {f.name: _figure_html(f, i, (svgs or {}).get(f.name)) for i, f in enumerate(figures)}
    if content.answer or content.trained_table is not None:
        body = "".join(f"<p>{_esc(line)}</p>" for line in content.answer)
        if content.trained_table is not None:
            body += _table(content.trained_table, table_id="trained-table")
        body += "".join(html_of[f.name] for f in figures if f.name in leading)
        sections.append(("answer", "The answer", body))
    else:
        leading = set()
    rest = [f for f in figures if f.name not in leading]
    if rest:
        sections.append(("figures", "Figures", "".join(html_of[f.name] for f in rest)))
    if content.fit_table is not None:
        formula = (
            f"<p>Law <b>{_esc(content.law)}</b>: <code>{_esc(content.law_formula)}</code></p>"
            if content.law_formula
            else ""
        )
        sections.append(
            ("fit", "Fit", formula + _table(content.fit_table, table_id="fit-table", digits=4))
        )
    if content.holdout_table is not None:
        summary = f"<p>{_esc(content.holdout_summary)}</p>" if content.holdout_summary else ""
        sections.append(
            (
                "heldout",
                "Held-out runs",
                summary + _table(content.holdout_table, table_id="holdout-table"),
            )
        )
    if content.plan_table is not None:
        # One column per budget: a plan has more quantities than fit across a page.
        plan = content.plan_table.T.reset_index()
        plan.columns = ["quantity", *[f"plan {i + 1}" for i in range(len(plan.columns) - 1)]]
        sections.append(("plan", "Plan", _table(plan, table_id="plan-table")))
    if content.run_table is not None:
        n = len(content.run_table)
        held = "heldout" if "heldout" in content.run_table.columns else None
        filt = (
            '<div><input class="filter" type="search" data-table="run-table" '
            f'placeholder="filter the {n} runs" aria-label="filter runs"></div>'
        )
        sections.append(
            (
                "runs",
                f"Runs ({n})",
                filt
                + '<div class="scroll">'
                + _table(content.run_table, table_id="run-table", heldout_column=held)
                + "</div>"
                + ("<p class='muted'>Shaded rows were held out of the fit.</p>" if held else ""),
            )
        )
    if content.commands:
        cmds = "\n".join(content.commands)
        sections.append(
            (
                "reproduce",
                "Reproduce",
                "<p>These commands, run from the same directory, rebuild this report:</p>"
                f"<pre><code>{_esc(cmds)}</code></pre>",
            )
        )
    if content.notes:
        items = "".join(f"<li>{_esc(n)}</li>" for n in content.notes)
        sections.append(("notes", "Notes on the data", f"<ul>{items}</ul>"))

    facts = "".join(
        f"<div><dt>{_esc(label)}</dt><dd>{_esc(value)}</dd></div>" for label, value in content.facts
    )
    warn = ""
    if content.warnings:
        items = "".join(f"<li>{_esc(w)}</li>" for w in content.warnings)
        warn = f'<div class="warnings" role="note"><b>Warnings</b><ul>{items}</ul></div>'
    nav = "".join(f'<a href="#{_esc(a)}">{_esc(t)}</a>' for a, t, _ in sections)
    if figures:
        nav += "".join(f'<a href="#{_esc(f.name)}">{_esc(f.title)}</a>' for f in figures)
    body = "".join(_section(a, t, b) for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="scalinglab {_esc(__version__)}">'
        f"<title>{_esc(content.title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><header><h1>{_esc(content.title)}</h1>"
        f"<p>Runs from <code>{_esc(content.source)}</code></p>"
        f"<p>Generated {_esc(stamp)} by scalinglab {_esc(__version__)}</p></header>"
        f'<dl class="facts">{facts}</dl>{warn}<nav aria-label="sections">{nav}</nav>{body}'
        "<footer>One self-contained file: it loads nothing from the network.</footer>"
        f"</main><script>{_SCRIPT}</script></body></html>\n"
    )


def write_report(
    content: ReportContent,
    path: str | Path,
    figures: Sequence[ReportFigure] | None = None,
    *,
    generated: _dt.datetime | None = None,
    svgs: Mapping[str, str] | None = None,
) -> Path:
    """Render the report and write it to ``path`` (parent folders are created); return the path."""
    out = check_output(path, field="out")
    text = render_html(content, figures, generated=generated, svgs=svgs)
    # Written beside and renamed, so an interrupted run never leaves half a report.
    write_atomic(out, text, field="out")
    return out
