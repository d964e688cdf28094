"""``scalinglab plan`` and ``scalinglab compare``: spend a budget with a fit; value a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from scalinglab.cli._common import console, err_console, fail, positive, print_json
from scalinglab.units import BUDGET_UNITS, UnitError, flops_from_budget

_UNIT_HELP = f"Unit of the budget: {', '.join(BUDGET_UNITS)}."


def _to_flops(value: float, option: str, unit: str, gpu: str, mfu: float, price: float | None):
    try:
        return flops_from_budget(value, unit, gpu=gpu, mfu=mfu, price_per_gpu_hour=price)
    except UnitError as exc:
        message = str(exc)
        if message.startswith("unknown unit"):
            fail(f"--unit: {message}")
        if message.startswith("unknown GPU"):
            fail(f"--gpu: {message}")
        if message.startswith("MFU"):
            fail(f"--mfu: {message}")
        fail(f"{option}: {message}")


_OPTIONS = {
    "fit": "--fit",
    "flops": "--budget",
    "target_loss": "--target-loss",
    "max_params": "--max-params",
    "max_unique_tokens": "--max-unique-tokens",
    "inference_tokens": "--inference-tokens",
    "level": "--level",
    "shape": "--count-flops",
}


def _with_option(exc: Exception, overrides: dict[str, str] | None = None) -> str:
    """The error's message, led by the option it concerns (PlanError.field)."""
    field = getattr(exc, "field", None)
    option = {**_OPTIONS, **(overrides or {})}.get(field or "")
    return f"{option}: {exc}" if option else str(exc)


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
    vocab: int = typer.Option(50257, "--vocab", help="With --count-flops: vocabulary size."),
    context: int = typer.Option(2048, "--context", help="With --count-flops: sequence length."),
    gpu: str = typer.Option("h100-sxm", "--gpu", help="a100-80gb, h100-sxm, h200 or cpu."),
    mfu: float = typer.Option(0.4, "--mfu", help="Model FLOP utilisation in (0, 1]."),
    count: int = typer.Option(1, "--count", "-k", help="Devices in parallel (sets wall days)."),
    price: float | None = typer.Option(None, "--price", help="Price per device-hour."),
    pue: float = typer.Option(1.0, "--pue", help="Data-centre power usage effectiveness."),
    level: float = typer.Option(0.9, "--level", help="Level of bootstrap intervals, in (0, 1)."),
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
    import scalinglab.plan as planning  # lazily: pandas only for the commands that need it

    modes = [x is not None for x in (budget, target_loss, frontier_range)]
    if sum(modes) != 1:
        fail("give exactly one of --budget, --target-loss, --frontier")
    positive(budget, "--budget")
    positive(target_loss, "--target-loss")
    positive(max_params, "--max-params")
    positive(max_unique_tokens, "--max-unique-tokens")
    if inference_tokens is not None and not (
        np.isfinite(inference_tokens) and inference_tokens >= 0
    ):
        fail(f"--inference-tokens must be a finite number ≥ 0, got {inference_tokens!r}")
    if not 0 < mfu <= 1:
        fail(f"--mfu must be in (0, 1], got {mfu!r}")
    if not 0 < level < 1:
        fail(f"--level must be in (0, 1), got {level!r}")
    if count < 1:
        fail(f"--count must be an integer ≥ 1, got {count!r}")
    if price is not None and price < 0:
        fail(f"--price must be ≥ 0, got {price!r}")
    if pue < 1:
        fail(f"--pue must be ≥ 1, got {pue!r}")
    if count_flops and (vocab < 1 or context < 1):
        fail("--vocab and --context must be integers ≥ 1")

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
                table.to_csv(csv, index=False)
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
    except planning.PlanError as exc:
        fail(_with_option(exc))
    except UnitError as exc:
        fail(f"--gpu: {exc}" if "GPU" in str(exc) else str(exc))
    row = allocation.to_dict()
    if csv is not None:
        import pandas as pd

        flat = dict(row, warnings="; ".join(row["warnings"]), shape=str(row["shape"]))
        pd.DataFrame([flat]).to_csv(csv, index=False)
    if as_json:
        print_json(row)
        return
    _print_allocation(allocation, title="Least compute" if target_loss else "Compute-optimal plan")


def _fmt_interval(value: float, interval: tuple[float, float] | None, fmt: str) -> str:
    text = fmt.format(value)
    if interval is not None and fmt.format(interval[0]) != fmt.format(interval[1]):
        text += f"  [{fmt.format(interval[0])}, {fmt.format(interval[1])}]"
    return text


def _print_allocation(a: Any, *, title: str) -> None:
    level = f" ({a.interval_level:.0%} interval)" if a.interval_level else ""
    table = Table(title=f"{title}: {a.law} fit{level}", show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value", justify="right")
    table.add_row("parameters N", _fmt_interval(a.params, a.params_interval, "{:.4g}"))
    table.add_row("tokens D", _fmt_interval(a.tokens, a.tokens_interval, "{:.4g}"))
    table.add_row("tokens per parameter", f"{a.tokens_per_param:.1f}")
    table.add_row("predicted loss", _fmt_interval(a.loss, a.loss_interval, "{:.4f}"))
    table.add_row(
        f"FLOPs ({a.flops_per_token})", _fmt_interval(a.flops, a.flops_interval, "{:.4g}")
    )
    if abs(a.budget_flops - a.flops) > 1e-9 * a.flops:
        table.add_row("budget, FLOPs", f"{a.budget_flops:.4g}")
    c = a.cost
    table.add_row("PF-days", f"{c.pf_days:,.1f}")
    table.add_row(f"{c.gpu}-hours at MFU {c.mfu:.0%}", f"{c.gpu_hours:,.0f}")
    table.add_row(f"days on {c.count} × {c.gpu}", f"{c.wall_days:,.1f}")
    if c.energy_kwh is not None:
        table.add_row(f"energy, kWh (PUE {c.pue:g})", f"{c.energy_kwh:,.0f}")
    if c.cost is not None:
        table.add_row("cost", f"{c.cost:,.0f}")
    if a.binding:
        table.add_row("binding limits", a.binding)
    if a.loss_penalty is not None:
        table.add_row("loss paid for the limits", f"{a.loss_penalty:+.4f}")
    if a.epochs is not None:
        table.add_row("epochs over unique tokens", f"{a.epochs:.2f}")
    if a.inference_flops is not None:
        table.add_row("inference FLOPs", f"{a.inference_flops:.4g}")
        table.add_row("training + inference FLOPs", f"{a.total_flops:.4g}")
    if a.shape is not None:
        s = a.shape
        table.add_row(
            "nearest real shape",
            f"{s.n_layer} layers × d_model {s.d_model}, {s.n_head} heads",
        )
    table.add_row("method", a.method)
    console.print(table)
    for note in a.warnings:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


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
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def compare(
    fits: Annotated[
        list[Path],
        typer.Option("--fit", help="Two fit.json files: recipe A (baseline), then recipe B."),
    ],
    at: Annotated[
        list[float], typer.Option("--at", help="Budget C in --unit (repeat for several).")
    ],
    unit: str = typer.Option("flops", "--unit", "-u", help=_UNIT_HELP),
    gpu: str = typer.Option("h100-sxm", "--gpu", help="For --unit gpu-hours or usd."),
    mfu: float = typer.Option(0.4, "--mfu", help="For --unit gpu-hours or usd."),
    price: float | None = typer.Option(None, "--price", help="For --unit usd: price per hour."),
    level: float = typer.Option(0.9, "--level", help="Level of the paired-bootstrap interval."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Compute-equivalent gain of recipe B over recipe A: B reaches at C/k the loss A reaches at C.

    k > 1: B's change (architecture, optimiser, data) is worth k× compute at C.

    Example: scalinglab compare --fit baseline.json --fit new.json --at 1e21
    """
    import scalinglab.plan as planning

    if len(fits) != 2:
        fail(f"--fit must be given exactly twice (A, then B), got {len(fits)}")
    if not 0 < level < 1:
        fail(f"--level must be in (0, 1), got {level!r}")
    for value in at:
        positive(value, "--at")
    budgets = [_to_flops(value, "--at", unit, gpu, mfu, price) for value in at]
    try:
        result = planning.compare(fits[0], fits[1], budgets, level=level)
    except planning.PlanError as exc:
        fail(_with_option(exc, {"flops": "--at"}))
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
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
