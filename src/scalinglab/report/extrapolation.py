"""The backtest figure: prediction error against extrapolation factor (matplotlib)."""

from __future__ import annotations

from typing import Any

from scalinglab.procedures import BacktestResult

__all__ = ["backtest_figure"]


def backtest_figure(result: BacktestResult) -> Any:
    """Error against extrapolation factor, one series per procedure (a matplotlib Figure).

    Points are held-out predictions (|relative error|, log factor axis); lines are the
    per-bin means. Drawn with the object-oriented API, so no global pyplot state is touched.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    palette = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
    p = result.predictions
    binned = result.by_factor()
    for i, name in enumerate(result.procedures):
        color = palette[i % len(palette)]
        rows = p[p["procedure"] == name]
        if rows.empty:
            continue
        ax.scatter(rows["factor"], 100 * rows["rel_error"].abs(), s=6, alpha=0.25, color=color)
        b = binned[binned["procedure"] == name]
        ax.plot(b["factor_mid"], 100 * b["mean_abs_error"], marker="o", color=color, label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"×{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_xlabel("extrapolation factor (run compute / largest fitted compute)")
    ax.set_ylabel("|relative error| of the loss (%)")
    ax.set_title("Backtest: prediction error against extrapolation")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
