"""A fit shown to a person: the text report (``Fit.report``, what ``scalinglab fit`` prints) and
the HTML table a notebook shows (``Fit._repr_html_``)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalinglab.fitting.result import Fit

__all__ = ["fit_html", "fit_report"]


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.4g}"


def _rows(fit: Fit) -> list[list[str]]:
    """Parameter rows: name, value and (with a bootstrap) the CI, derived quantities last."""
    law = fit.law_object
    values = [(name, fit.params[name], name) for name in law.param_names]
    values += [(f"{k} (derived)", v, k) for k, v in fit.derived.items()]
    rows = []
    for label, value, key in values:
        cells = [label, _fmt(value)]
        if fit.ci is not None:
            lo, hi = fit.ci.get(key, (float("nan"), float("nan")))
            cells.append(f"{_fmt(lo)} – {_fmt(hi)}")
        rows.append(cells)
    return rows


def _header(fit: Fit) -> list[str]:
    return ["parameter", "value"] + ([f"{fit.ci_level:.0%} CI"] if fit.ci is not None else [])


def _objective_line(fit: Fit) -> str:
    loss = fit.loss + (f" δ={fit.huber_delta:g}" if fit.loss in ("huber", "asymmetric") else "")
    return (
        f"objective ({loss}, summed over log residuals): {fit.objective:.10g}; "
        f"N counts {fit.param_basis} parameters"
    )


def _holdout_line(fit: Fit) -> str | None:
    h = fit.holdout
    if h is None:
        return None
    line = (
        f"held out {h['n_holdout']} runs with C > {h['threshold_flops']:.3g} FLOP (fitted on "
        f"{h['n_train']}): mean |relative error| {h['mean_abs_rel_error']:.2%}, mean "
        f"relative error {h['mean_rel_error']:+.2%}, worst {h['max_abs_rel_error']:.2%}"
    )
    if "coverage" in h:
        line += f", {h['coverage']:.0%} inside their {fit.ci_level:.0%} intervals"
    return line


def _prediction_line(prediction: Mapping[str, Any]) -> str:
    inputs = ", ".join(f"{k}={v:.4g}" for k, v in prediction["inputs"].items())
    text = f"predicted loss at {inputs}: {prediction['loss']:.4f}"
    if "interval" in prediction:
        lo, hi = prediction["interval"]
        text += f"  ({prediction['level']:.0%} interval {lo:.4f} – {hi:.4f})"
    return text


def _all_warnings(fit: Fit, extra: Sequence[str]) -> list[str]:
    # The verdict (implausible exponents, ...) joins the warnings, each said once.
    reasons = [r for r in fit.reasons if r not in fit.warnings]
    return [*extra, *fit.warnings, *reasons]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # The name left-aligned, the numbers right-aligned, as a person reads a table of values.
        parts = [cells[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def fit_report(
    fit: Fit,
    *,
    source: str | None = None,
    notes: Sequence[str] | None = None,
    warnings: Sequence[str] = (),
    prediction: Mapping[str, Any] | None = None,
) -> str:
    """The text of :meth:`Fit.report <scalinglab.fitting.Fit.report>` (see there)."""
    law = fit.law_object
    source = source if source is not None else fit.diagnostics.get("runs_source")
    lines = [law.formula] if law.formula else []
    lines.append(f"{fit.law}: {fit.n_runs} runs" + (f" from {source}" if source else ""))
    lines += _table(_header(fit), _rows(fit))
    lines.append(_objective_line(fit))
    holdout = _holdout_line(fit)
    if holdout:
        lines.append(holdout)
    if prediction is not None:
        lines.append(_prediction_line(prediction))
    run_notes = notes if notes is not None else fit.diagnostics.get("runs_notes", ())
    lines += [f"note: {n}" for n in run_notes]
    lines += [f"warning: {w}" for w in _all_warnings(fit, warnings)]
    return "\n".join(lines)


def fit_html(fit: Fit) -> str:
    """An HTML table of the fit for notebooks: formula, parameters with CIs, objective, warnings."""
    esc = html.escape
    law = fit.law_object
    head = "".join(f"<th>{esc(h)}</th>" for h in _header(fit))
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in _rows(fit)
    )
    parts = [
        "<div class='scalinglab-fit'>",
        f"<p><b>{esc(law.formula or fit.law)}</b><br>{esc(fit.law)}: {fit.n_runs} runs</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        f"<p>{esc(_objective_line(fit))}</p>",
    ]
    holdout = _holdout_line(fit)
    if holdout:
        parts.append(f"<p>{esc(holdout)}</p>")
    warns = _all_warnings(fit, ())
    if warns:
        items = "".join(f"<li>{esc(w)}</li>" for w in warns)
        parts.append(f"<p><b>warnings</b></p><ul>{items}</ul>")
    parts.append("</div>")
    return "".join(parts)
