"""``scalinglab compute``: the compute calculator (FLOPs, PF-days, GPU-hours, energy, cost)."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from scalinglab.cli._common import (
    CONTEXT_DEFAULT,
    GPU_HELP,
    VOCAB_DEFAULT,
    api_default,
    console,
    fail,
    fail_with,
    positive,
    print_json,
)
from scalinglab.counting import TransformerShape, complete_ndc, count_params, flops_per_token
from scalinglab.errors import ScalingLabError
from scalinglab.units import compute_cost

# The API's arguments whose options are named otherwise; the rest map by name (cli._common).
_OPTIONS = {
    "price_per_gpu_hour": "--price",
    "n_layer": "--layers",
    "n_head": "--heads",
    "vocab_size": "--vocab",
    "context_length": "--context",
    "positional": "--rotary",
    "mlp": "--gated",
}


def compute(
    params: float | None = typer.Option(
        None, "--params", "-N", help="Parameters N (as you count them), e.g. 175e9."
    ),
    tokens: float | None = typer.Option(None, "--tokens", "-D", help="Training tokens D."),
    flops: float | None = typer.Option(
        None, "--flops", "-C", help="Training compute in FLOP (instead of N and D)."
    ),
    layers: int | None = typer.Option(None, "--layers", help="Model shape: number of layers."),
    d_model: int | None = typer.Option(None, "--d-model", help="Model shape: width."),
    heads: int | None = typer.Option(None, "--heads", help="Model shape: attention heads."),
    vocab: int = typer.Option(VOCAB_DEFAULT, "--vocab", help="Model shape: vocabulary size."),
    context: int = typer.Option(CONTEXT_DEFAULT, "--context", help="Model shape: sequence length."),
    d_ff: int | None = typer.Option(None, "--d-ff", help="Model shape: MLP width (4·d default)."),
    untied: bool = typer.Option(False, "--untied", help="Model shape: untied output matrix."),
    rotary: bool = typer.Option(False, "--rotary", help="Model shape: rotary positions."),
    gated: bool = typer.Option(False, "--gated", help="Model shape: gated (SwiGLU) MLP."),
    bias: bool = typer.Option(False, "--bias", help="Model shape: biases (GPT-2 style)."),
    gpu: str = typer.Option(api_default(compute_cost, "gpu"), "--gpu", help=GPU_HELP),
    mfu: float = typer.Option(
        api_default(compute_cost, "mfu"), "--mfu", help="Model FLOP utilisation in (0, 1]."
    ),
    count: int = typer.Option(
        api_default(compute_cost, "count"),
        "--count",
        "-k",
        help="Devices in parallel (sets wall days).",
    ),
    price: float | None = typer.Option(None, "--price", help="Price per device-hour."),
    pue: float = typer.Option(
        api_default(compute_cost, "pue"), "--pue", help="Data-centre power usage effectiveness."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Express a training run in FLOPs, PF-days, GPU-hours, days, energy and cost.

    Give N and D (FLOPs = 6·N·D), a model shape and D (per-operation FLOPs of
    Hoffmann et al. 2022, App. F), or FLOPs directly.

    Example: scalinglab compute --params 175e9 --tokens 300e9 --gpu a100-80gb --mfu 0.5
    """
    # N and D only scale the FLOPs here; compute_cost checks everything else.
    positive(params, "--params")
    positive(tokens, "--tokens")
    report: dict[str, Any] = {"params": params, "tokens": tokens, "flops_method": None}
    try:
        if any(v is not None for v in (layers, d_model, heads)):
            if None in (layers, d_model, heads):
                fail("a model shape needs all of --layers, --d-model and --heads")
            # The shape fixes N and the FLOPs: a --params or --flops beside it would be dropped.
            for option, value in (("--params", params), ("--flops", flops)):
                if value is not None:
                    fail(
                        f"{option}: give a model shape (--layers, --d-model, --heads) or "
                        f"{option}, not both: the shape sets it"
                    )
            if tokens is None:
                fail("a model shape needs --tokens to give training FLOPs")
            shape = TransformerShape(
                n_layer=layers,  # type: ignore[arg-type]
                d_model=d_model,  # type: ignore[arg-type]
                n_head=heads,  # type: ignore[arg-type]
                vocab_size=vocab,
                context_length=context,
                d_ff=d_ff,
                tied_embeddings=not untied,
                positional="rotary" if rotary else "learned",
                mlp="gated" if gated else "gelu",
                bias=bias,
            )
            counts = count_params(shape)
            per_token = flops_per_token(shape)
            flops = per_token.per_operation * tokens
            report.update(
                params=counts.total,
                non_embedding_params=counts.non_embedding,
                flops_6nd=per_token.six_n_total * tokens,
                flops_method="per-operation (Hoffmann et al. 2022, App. F)",
            )
        elif flops is not None and params is None and tokens is None:
            report["flops_method"] = "given"
        elif params is None and tokens is None:
            fail("give --params and --tokens, a model shape with --tokens, or --flops")
        else:
            report["flops_method"] = "6·N·D" if flops is None else "given"
            report["params"], report["tokens"], flops = complete_ndc(params, tokens, flops)
        cost = compute_cost(flops, gpu=gpu, mfu=mfu, count=count, price_per_gpu_hour=price, pue=pue)
    except ScalingLabError as exc:
        fail_with(exc, _OPTIONS)
    report.update(cost.to_dict())
    if as_json:
        print_json(report)
        return
    _print_table(report)


def _print_table(report: dict[str, Any]) -> None:
    table = Table(title="Training compute", show_header=False)
    table.add_column("quantity", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("parameters N", report.get("params"), "{:.4g}"),
        ("non-embedding N", report.get("non_embedding_params"), "{:.4g}"),
        ("tokens D", report.get("tokens"), "{:.4g}"),
        ("tokens per parameter", _ratio(report.get("tokens"), report.get("params")), "{:.1f}"),
        (f"FLOPs ({report['flops_method']})", report["flops"], "{:.4g}"),
        ("FLOPs (6·N·D)", report.get("flops_6nd"), "{:.4g}"),
        ("PF-days", report["pf_days"], "{:,.1f}"),
        (f"{report['gpu']}-hours at MFU {report['mfu']:.0%}", report["gpu_hours"], "{:,.0f}"),
        (f"days on {report['count']} × {report['gpu']}", report["wall_days"], "{:,.1f}"),
        (f"energy, kWh (PUE {report['pue']:g})", report["energy_kwh"], "{:,.0f}"),
        ("cost", report["cost"], "{:,.0f}"),
    ]
    for label, value, fmt in rows:
        if value is not None:
            table.add_row(label, fmt.format(value))
    console.print(table)


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None else num / den
