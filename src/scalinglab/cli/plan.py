"""``scalinglab plan`` and ``scalinglab compare``: spend a budget with a fit; value a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from scalinglab import plan as planning
from scalinglab.cli._common import (
    CONTEXT_DEFAULT,
    GPU_HELP,
    VOCAB_DEFAULT,
    api_default,
    console,
    err_console,
    esc,
    fail,
    fail_with,
    output,
    print_json,
)
from scalinglab.errors import ScalingLabError
from scalinglab.outputs import atomic_path
from scalinglab.units import BUDGET_UNITS, flops_from_budget

_UNIT_HELP = f"Unit of the budget: {', '.join(BUDGET_UNITS)}."
# The API's arguments whose options are named otherwise; the rest map by name (cli._common).
_OPTIONS = {"flops": "--budget", "shape": "--count-flops", "price_per_gpu_hour": "--price"}


def _to_flops(value: float, option: str, unit: str, gpu: str, mfu: float, price: float | None):
    """A budget given in ``unit`` as FLOPs; an error names ``option`` for the budget itself."""
    try:
        return flops_from_budget(value, unit, gpu=gpu, mfu=mfu, price_per_gpu_hour=price)
    except ScalingLabError as exc:
        fail_with(exc, {**_OPTIONS, "value": option})


def _parse_range(text: str, option: str) -> tuple[float, float, int | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        fail(f"{option} must be LOW:HIGH or LOW:HIGH:POINTS, got {text!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
        points = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        fail(f"{option} must be LOW:HIGH[:POINTS] with numbers, got {text!r}")
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        fail(f"{option} needs 0 < LOW < HIGH, got {text!r}")
    if points is not None and points < 2:
        fail(f"{option}: POINTS must be ≥ 2, got {points}")
    return low, high, points


def plan(
    fit: Annotated[
        Path, typer.Option("--fit", help="A fit.json written by `scalinglab fit --out`.")
    ],
    budget: float | None = typer.Option(None, "--budget", "-b", help="Training budget in --unit."),
    unit: str = typer.Option("flops", "--unit", "-u", help=_UNIT_HELP),
    target_loss: float | None = typer.Option(
        None, "--target-loss", help="Instead of a budget: the least compute reaching this loss."
    ),
    frontier_range: str | None = typer.Option(
        None,
        "--frontier",
        help="Instead of one budget: LOW:HIGH[:POINTS] budgets in --unit (log-spaced, 13).",
    ),
    max_params: float | None = typer.Option(
        None, "--max-params", help="Parameter cap (memory or serving)."
    ),
    max_unique_tokens: float | None = typer.Option(
        None, "--max-unique-tokens", help="Unique tokens available (repetition allowed)."
    ),
    inference_tokens: float | None = typer.Option(
        None,
        "--inference-tokens",
        help="Expected inference tokens: least training + inference FLOPs (Sardana & Frankle).",
    ),
    count_flops: bool = typer.Option(
        False,
        "--count-flops",
        help="Count FLOPs per operation for real shapes (--vocab, --context) and report the "
        "nearest real shape.",
    ),
    vocab: int = typer.Option(
        VOCAB_DEFAULT, "--vocab", help="With --count-flops: vocabulary size."
    ),
    context: int = typer.Option(
        CONTEXT_DEFAULT, "--context", help="With --count-flops: sequence length."
    ),
    gpu: str = typer.Option(api_default(planning.allocate, "gpu"), "--gpu", help=GPU_HELP),
    mfu: float = typer.Option(
        api_default(planning.allocate, "mfu"), "--mfu", help="Model FLOP utilisation in (0, 1]."
    ),
    count: int = typer.Option(
        api_default(planning.allocate, "count"),
        "--count",
        "-k",
        help="Devices in parallel (sets wall days).",
    ),
    price: float | None = typer.Option(None, "--price", help="Price per device-hour."),
    pue: float = typer.Option(
        api_default(planning.allocate, "pue"),
        "--pue",
        help="Data-centre power usage effectiveness.",
    ),
    level: float = typer.Option(
        api_default(planning.allocate, "level"),
        "--level",
        help="Level of bootstrap intervals, in (0, 1).",
    ),
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Also write the plan(s) as CSV here.")
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Plan a training run from a fit: N, D, loss, and the budget in every unit.

    Give a budget (--budget with --unit), a target loss (--target-loss) or a range of budgets
    (--frontier). Limits: --max-params, --max-unique-tokens, --inference-tokens.

    Example: scalinglab plan --fit fit.json --budget 5.76e23 --max-params 3e10
    """
    modes = [x is not None for x in (budget, target_loss, frontier_range)]
    if sum(modes) != 1:
        fail("give exactly one of --budget, --target-loss, --frontier")
    output(csv, "csv", inputs=[fit])

    options: dict[str, Any] = dict(
        max_params=max_params,
        max_unique_tokens=max_unique_tokens,
        inference_tokens=inference_tokens,
        gpu=gpu,
        mfu=mfu,
        count=count,
        price_per_gpu_hour=price,
        pue=pue,
        level=level,
        shape={"vocab_size": vocab, "context_length": context} if count_flops else None,
    )
    try:
        if frontier_range is not None:
            low, high, points = _parse_range(frontier_range, "--frontier")
            budgets = np.geomspace(
                _to_flops(low, "--frontier", unit, gpu, mfu, price),
                _to_flops(high, "--frontier", unit, gpu, mfu, price),
                points or 13,
            )
            with console.status("planning the frontier…"):
                table = planning.frontier(fit, budgets, **options)
            if csv is not None:
                _write_csv(table, csv)
            if as_json:
                print_json({"rows": table.to_dict(orient="records")})
            else:
                _print_frontier(table)
            return
        if target_loss is not None:
            allocation = planning.least_compute(fit, target_loss, **options)
        else:
            flops = _to_flops(budget, "--budget", unit, gpu, mfu, price)  # type: ignore[arg-type]
            allocation = planning.allocate(fit, flops, **options)
    except ScalingLabError as exc:
        fail_with(exc, _OPTIONS)
    row = allocation.to_dict()
    if csv is not None:
        import pandas as pd

        flat = dict(row, warnings="; ".join(row["warnings"]), shape=str(row["shape"]))
        _write_csv(pd.DataFrame([flat]), csv)
    if as_json:
        print_json(row)
        return
    _print_allocation(allocation, title="Least compute" if target_loss else "Compute-optimal plan")


def _print_allocation(allocation: planning.Allocation, *, title: str) -> None:
    table = Table(title=f"{title}: {esc(allocation.title)}", show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value", justify="right")
    for label, value in allocation.summary():
        table.add_row(esc(label), esc(value))
    console.print(table)
    for note in allocation.warnings:
        err_console.print(f"[yellow]note:[/] {esc(note)}", highlight=False, soft_wrap=True)


def _print_frontier(frame: Any) -> None:
    table = Table(title="Compute-optimal frontier")
    for name in ("FLOPs", "PF-days", "N", "D", "D/N", "loss", "GPU-hours", "binding"):
        table.add_column(name, justify="right")
    for row in frame.to_dict(orient="records"):
        loss = f"{row['loss']:.4f}"
        if row.get("loss_low") is not None and np.isfinite(row["loss_low"]):
            loss += f" [{row['loss_low']:.3f}, {row['loss_high']:.3f}]"
        table.add_row(
            f"{row['flops']:.3g}",
            f"{row['pf_days']:,.3g}",
            f"{row['params']:.3g}",
            f"{row['tokens']:.3g}",
            f"{row['tokens_per_param']:.1f}",
            loss,
            f"{row['gpu_hours']:,.0f}",
            str(row["binding"] or ""),
        )
    console.print(table)
    notes = {n for text in frame["warnings"] if text for n in str(text).split("; ")}
    for note in sorted(notes):
        err_console.print(f"[yellow]note:[/] {esc(note)}", highlight=False, soft_wrap=True)


def compare(
    fits: Annotated[
        list[Path],
        typer.Option("--fit", help="Two fit.json files: recipe A (baseline), then recipe B."),
    ],
    at: Annotated[
        list[float], typer.Option("--at", help="Budget C in --unit (repeat for several).")
    ],
    unit: str = typer.Option("flops", "--unit", "-u", help=_UNIT_HELP),
    gpu: str = typer.Option(
        api_default(planning.allocate, "gpu"),
        "--gpu",
        help=f"For --unit gpu-hours or usd. {GPU_HELP}",
    ),
    mfu: float = typer.Option(
        api_default(planning.allocate, "mfu"), "--mfu", help="For --unit gpu-hours or usd."
    ),
    price: float | None = typer.Option(None, "--price", help="For --unit usd: price per hour."),
    level: float = typer.Option(
        api_default(planning.compare, "level"),
        "--level",
        help="Level of the paired-bootstrap interval.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Compute-equivalent gain of recipe B over recipe A: B reaches at C/k the loss A reaches at C.

    k > 1: B's change (architecture, optimiser, data) is worth k× compute at C.

    Example: scalinglab compare --fit baseline.json --fit new.json --at 1e21
    """
    if len(fits) != 2:
        fail(f"--fit must be given exactly twice (A, then B), got {len(fits)}")
    budgets = [_to_flops(value, "--at", unit, gpu, mfu, price) for value in at]
    try:
        result = planning.compare(fits[0], fits[1], budgets, level=level)
    except ScalingLabError as exc:
        fail_with(exc, {**_OPTIONS, "flops": "--at", "fit": "--fit"})
    payload = result.to_dict()
    payload["fit_a"], payload["fit_b"] = str(fits[0]), str(fits[1])
    if as_json:
        if len(budgets) == 1:
            # One budget: its row's keys (flops, multiplier, ...) at top level too.
            payload = {**payload["rows"][0], **payload}
        else:
            payload["multiplier"] = [row["multiplier"] for row in payload["rows"]]
        print_json(payload)
        return
    level_text = f" ({result.level:.0%} paired-bootstrap interval)" if result.level else ""
    table = Table(title=f"Compute-equivalent gain of B over A{level_text}")
    for name in ("C (FLOPs)", "PF-days", "multiplier k", "loss A at C", "loss B at C", "B needs"):
        table.add_column(name, justify="right")
    for row in payload["rows"]:
        k = f"{row['multiplier']:.3g}"
        if row.get("multiplier_low") is not None:
            k += f" [{row['multiplier_low']:.3g}, {row['multiplier_high']:.3g}]"
        table.add_row(
            f"{row['flops']:.3g}",
            f"{row['pf_days']:,.3g}",
            k,
            f"{row['loss_a']:.4f}",
            f"{row['loss_b']:.4f}",
            "—" if row["flops_b"] is None else f"{row['flops_b']:.3g}",
        )
    console.print(table)
    for note in result.warnings:
        err_console.print(f"[yellow]note:[/] {esc(note)}", highlight=False, soft_wrap=True)


def _write_csv(table: Any, csv: Path) -> None:
    try:
        with atomic_path(csv, field="csv") as temporary:
            table.to_csv(temporary, index=False)
    except ScalingLabError as exc:
        fail_with(exc)
