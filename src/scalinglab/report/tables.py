"""The report's tables and headline facts, as data frames and strings (display names as columns).

Numbers stay numbers: the page formats them (:func:`scalinglab.report.html.format_number`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scalinglab.report.values import TrainedRun

if TYPE_CHECKING:
    from scalinglab.fitting import Fit

__all__ = [
    "exponent_facts",
    "exponent_names",
    "fit_table",
    "holdout_table",
    "plan_table",
    "run_labels",
    "run_table",
    "symbol",
    "tooltips",
    "trained_table",
]

# Symbols for the exponents the bootstrap figure shows, in the field's notation.
_SYMBOLS = {
    "alpha": "α",
    "beta": "β",
    "alpha_N": "α_N",
    "alpha_D": "α_D",
    "a": "a = β/(α+β)",
    "b": "b = α/(α+β)",
}


def run_labels(frame: pd.DataFrame) -> tuple[str, ...]:
    """A short name per run: its point id or ``run_id`` (and ``group``), else its row number.

    A store's WSD cooldowns share their trunk's ``run_id`` but each has its own ``point_id``.
    """
    n = len(frame)
    column = "point_id" if "point_id" in frame else "run_id" if "run_id" in frame else None
    ids = frame[column].astype(str).tolist() if column else [f"row {i + 1}" for i in range(n)]
    if "group" in frame:
        ids = [f"{g} / {r}" for g, r in zip(frame["group"].astype(str), ids, strict=True)]
    return tuple(ids)


def tooltips(frame: pd.DataFrame, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(
        f"{name}: N={n:.3g}, D={d:.3g}, C={c:.3g} FLOP, loss={lo:.4f}"
        for name, n, d, c, lo in zip(
            names, frame["params"], frame["tokens"], frame["flops"], frame["loss"], strict=True
        )
    )


def symbol(name: str) -> str:
    return _SYMBOLS.get(name, name)


def exponent_names(fit: Fit) -> list[str]:
    law = fit.law_object
    names = [p for p in law.param_names if p.startswith(("alpha", "beta"))]
    return names + list(fit.derived)


def exponent_facts(fit: Fit) -> list[tuple[str, str]]:
    values = {**dict(fit.params), **fit.derived}
    out = []
    for name in exponent_names(fit):
        text = f"{values[name]:.3f}"
        if fit.ci and name in fit.ci:
            lo, hi = fit.ci[name]
            text += f" [{lo:.3f}, {hi:.3f}]"
        out.append((symbol(name), text))
    return out


def fit_table(fit: Fit) -> pd.DataFrame:
    level = f"{fit.ci_level:.0%} interval"
    values = {**dict(fit.params), **fit.derived}
    rows = []
    for name, value in values.items():
        ci = fit.ci.get(name) if fit.ci else None
        rows.append({"parameter": symbol(name), "estimate": value, level: ci})
    table = pd.DataFrame(rows)
    if not fit.ci:
        table = table.drop(columns=[level])
    return table


def holdout_table(check: Fit, level: float) -> tuple[pd.DataFrame, str, str]:
    h = check.holdout or {}
    rows = []
    for run in h.get("runs", []):
        row = {
            "N": run["params"],
            "D": run["tokens"],
            "C (FLOP)": run["flops"],
            "observed loss": run["loss"],
            "predicted loss": run["predicted"],
            "relative error (%)": 100.0 * run["rel_error"],
        }
        if run.get("interval") is not None:
            row[f"{level:.0%} interval"] = tuple(run["interval"])
        rows.append(row)
    mean = 100.0 * float(h.get("mean_abs_rel_error", float("nan")))
    worst = 100.0 * float(h.get("max_abs_rel_error", float("nan")))
    n_hold = int(h.get("n_holdout", len(rows)))
    plural = "s" if n_hold != 1 else ""
    threshold = float(h.get("threshold_flops", float("nan")))
    curves = h.get("curves")
    fitted = f"the {h.get('n_train', '?')} runs with C ≤ {threshold:.3g} FLOP"
    if curves:  # a check of a curve fit (report.curvefit): checkpoints fitted, run ends scored
        fitted = (
            f"{curves['points']} points of the training curves with C ≤ {threshold:.3g} FLOP "
            f"({h.get('n_train', '?')} run ends)"
        )
    summary = (
        f"Fitted on {fitted}, the law predicts the {n_hold} larger-compute run{plural} with a "
        f"mean absolute relative error of {mean:.2f}% (worst {worst:.2f}%)."
    )
    if "coverage" in h:
        kind = h.get("interval", "bootstrap")
        summary += f" {100 * h['coverage']:.0f}% of them fall inside the {kind} interval."
    headline = f"{mean:.2f}% ({n_hold} run{plural})"
    return pd.DataFrame(rows), summary, headline


def plan_table(allocations: Sequence[Any], level: float) -> pd.DataFrame:
    rows = []
    for a in allocations:
        c = a.cost
        row = {
            "budget (FLOP)": a.budget_flops,
            "PF-days": c.pf_days,
            "N": a.params,
            f"N {level:.0%} interval": a.params_interval,
            "N interval (decades)": a.params_decades,
            "a (N ∝ C^a)": a.a,
            f"a {level:.0%} interval": a.a_interval,
            "D": a.tokens,
            f"D {level:.0%} interval": a.tokens_interval,
            "D/N": a.tokens_per_param,
            "loss": a.loss,
            f"loss {level:.0%} interval": a.loss_interval,
            "FLOPs of the run": a.flops,
            f"{c.gpu}-hours (MFU {c.mfu:.0%})": c.gpu_hours,
            f"days on {c.count}": c.wall_days,
            f"energy (kWh, PUE {c.pue:g})": c.energy_kwh,
            "cost": c.cost,
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.dropna(axis=1, how="all")


def run_table(
    frame: pd.DataFrame, names: Sequence[str], predicted: np.ndarray | None, heldout: np.ndarray
) -> pd.DataFrame:
    table = pd.DataFrame({"run": list(names)})
    table["N"] = frame["params"].to_numpy(float)
    table["D"] = frame["tokens"].to_numpy(float)
    table["C (FLOP)"] = frame["flops"].to_numpy(float)
    table["D/N"] = table["D"] / table["N"]
    table["loss"] = frame["loss"].to_numpy(float)
    if predicted is not None:
        table["predicted"] = predicted
        table["residual (%)"] = 100.0 * (table["loss"] / predicted - 1.0)
    if heldout.any():
        table["heldout"] = heldout
    return table


# Runs whose compute differs by less than this fraction share an IsoFLOP level (the default of
# scalinglab.approaches.isoflop: a sweep's runs land within a few per cent of their budget).


def trained_table(trained: Sequence[TrainedRun]) -> pd.DataFrame:
    rows = []
    for run in trained:
        level = f"{run.level:.0%} interval" if run.level else "interval"
        rows.append(
            {
                "run": run.label,
                "N": run.params,
                "D": run.tokens,
                "D/N": run.tokens / run.params,
                "C (FLOP)": run.flops,
                "predicted loss": run.predicted,
                level: run.interval,
                "measured loss": run.measured,
                "measured/predicted − 1 (%)": (
                    None if run.rel_error is None else 100.0 * run.rel_error
                ),
                "inside the interval": None
                if run.inside is None
                else "yes"
                if run.inside
                else "no",
            }
        )
    return pd.DataFrame(rows)
