"""``scalinglab train``: train one GPT of about N parameters on D tokens and report its loss."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from scalinglab.cli._common import (
    console,
    err_console,
    fail,
    fail_with,
    output,
    positive,
    print_json,
)
from scalinglab.errors import ScalingLabError

# The torch-free registries: the CLI starts without torch.
from scalinglab.sweep.spec_values import PARAM_BASES as _BASES
from scalinglab.train.config import DEVICES, PRECISIONS, TrainConfig
from scalinglab.train.corpus import TEXT_TOKENIZERS as _TOKENIZERS
from scalinglab.train.schedule import SCHEDULES as _SCHEDULES

_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


# TrainConfig's fields (and the shape's) whose option is named otherwise; the rest match.
_OPTIONS = {
    "corpus_vocab_size": "--vocab-size",
    "branch_tokens": "--branch",
    "cooldown_fraction": "--cooldown",
    "eval_interval_tokens": "--eval-interval",
    "compile": "--compile",
    "context_length": "--context",
    "n_layer": "--layers",
    "n_head": "--heads",
}


def _whole(value: float | None, option: str) -> int | None:
    """A count given as a float (``5e7``) as an int; its range is TrainConfig's to check."""
    if value is None:
        return None
    if not math.isfinite(value):
        fail(f"{option} must be a finite number, got {value!r}")
    return round(value)


def train(
    params: float | None = typer.Option(
        None, "--params", "-N", help="Target parameter count, e.g. 2e6 (shape by the shape rule)."
    ),
    tokens: float = typer.Option(..., "--tokens", "-D", help="Training tokens, e.g. 5e7."),
    corpus: str = typer.Option(
        _CONFIG_DEFAULTS["corpus"],
        "--corpus",
        help="stdlib, synthetic (or synthetic:order=1,alphabet=64), or a text file or folder.",
    ),
    tokenizer: str = typer.Option(
        _CONFIG_DEFAULTS["tokenizer"], "--tokenizer", help=f"Tokenizer: {', '.join(_TOKENIZERS)}."
    ),
    vocab_size: int | None = typer.Option(
        None, "--vocab-size", help="BPE vocabulary to learn, or the synthetic alphabet."
    ),
    context: int = typer.Option(256, "--context", help="Sequence length in tokens."),
    basis: str = typer.Option(
        _BASES[0], "--basis", help=f"What --params counts: {' or '.join(_BASES)}."
    ),
    layers: int | None = typer.Option(None, "--layers", help="Explicit shape: layers."),
    d_model: int | None = typer.Option(None, "--d-model", help="Explicit shape: width."),
    heads: int | None = typer.Option(None, "--heads", help="Explicit shape: attention heads."),
    rotary: bool = typer.Option(False, "--rotary", help="Rotary instead of learned positions."),
    gated: bool = typer.Option(False, "--gated", help="Gated (SwiGLU) MLP."),
    untied: bool = typer.Option(False, "--untied", help="Untied output matrix."),
    bias: bool = typer.Option(False, "--bias", help="Biases in linear layers and norms."),
    schedule: str = typer.Option(
        _CONFIG_DEFAULTS["schedule"], "--schedule", help=f"Schedule: {', '.join(_SCHEDULES)}."
    ),
    branch: Annotated[
        list[float] | None,
        typer.Option(
            "--branch", help="WSD: also cool down from the stable phase at these tokens (repeat)."
        ),
    ] = None,
    cooldown: float = typer.Option(
        _CONFIG_DEFAULTS["cooldown_fraction"],
        "--cooldown",
        help="WSD cooldown fraction in (0, 1).",
    ),
    batch_size: int = typer.Option(
        _CONFIG_DEFAULTS["batch_size"], "--batch-size", help="Sequences per step."
    ),
    lr: float = typer.Option(_CONFIG_DEFAULTS["lr"], "--lr", help="Peak learning rate."),
    warmup_tokens: float | None = typer.Option(
        None, "--warmup-tokens", help="Warmup tokens (default 5 % of the run)."
    ),
    eval_interval: float | None = typer.Option(
        None, "--eval-interval", help="Validate every this many tokens (default a tenth)."
    ),
    eval_tokens: float = typer.Option(
        float(_CONFIG_DEFAULTS["eval_tokens"]),
        "--eval-tokens",
        help="Validation tokens per evaluation.",
    ),
    seed: int = typer.Option(
        _CONFIG_DEFAULTS["seed"], "--seed", help="Seed of the weights and the batch order."
    ),
    device: str = typer.Option(
        _CONFIG_DEFAULTS["device"],
        "--device",
        help=f"Device: {' or '.join(DEVICES)} (cuda:N for one GPU).",
    ),
    precision: str = typer.Option(
        _CONFIG_DEFAULTS["precision"],
        "--precision",
        help=f"Precision: {', '.join(PRECISIONS)}. auto times bf16 on CPUs with bf16 units; "
        "bf16 is autocast, bf16-matmul (CPU) fp32 tensors with bf16 matmuls.",
    ),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: cores)."),
    compile_model: bool | None = typer.Option(
        None,
        "--compile/--no-compile",
        help="torch.compile the model (default: on CUDA for runs of 1,000 steps or more).",
    ),
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option("--checkpoint-dir", help="Checkpoint here at each evaluation; resume."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Train a GPT of about N parameters on D tokens; report loss, FLOPs, tokens/s and MFU.

    Example: scalinglab train --params 2e6 --tokens 5e7 --corpus stdlib --schedule wsd
    """
    if tokenizer not in _TOKENIZERS:
        fail(f"--tokenizer must be one of {', '.join(_TOKENIZERS)}, got {tokenizer!r}")
    if basis not in _BASES:
        fail(f"--basis must be one of {', '.join(_BASES)}, got {basis!r}")
    explicit = [v is not None for v in (layers, d_model, heads)]
    if any(explicit) and not all(explicit):
        fail("an explicit shape needs all of --layers, --d-model and --heads")
    if all(explicit) == (params is not None):
        fail("give --params, or an explicit shape (--layers, --d-model, --heads), not both")
    positive(params, "--params")
    output(checkpoint_dir, "checkpoint_dir", folder=True)

    from scalinglab._optional import MissingDependencyError, require
    from scalinglab.counting import TransformerShape, count_params
    from scalinglab.train.corpus import load_corpus
    from scalinglab.train.shapes import shape_for_params

    options: dict[str, Any] = dict(
        tied_embeddings=not untied,
        positional="rotary" if rotary else "learned",
        mlp="gated" if gated else "gelu",
        bias=bias,
    )
    try:
        # TrainConfig checks the options now, before the corpus is built (minutes for a BPE):
        # of the shape only the context sets the steps, so a stand-in carries it until the
        # corpus gives the vocabulary.
        config = TrainConfig(
            shape=TransformerShape(1, 64, 1, 256, context, **options),
            tokens=_whole(tokens, "--tokens"),  # type: ignore[arg-type]
            corpus=corpus,
            tokenizer=tokenizer,
            corpus_vocab_size=vocab_size,
            batch_size=batch_size,
            lr=lr,
            warmup_tokens=_whole(warmup_tokens, "--warmup-tokens"),
            schedule=schedule,
            cooldown_fraction=cooldown,
            branch_tokens=tuple(_whole(b, "--branch") for b in branch or ()),  # type: ignore[misc]
            eval_interval_tokens=_whole(eval_interval, "--eval-interval"),
            eval_tokens=_whole(eval_tokens, "--eval-tokens"),  # type: ignore[arg-type]
            seed=seed,
            device=device,
            threads=threads,
            precision=precision,
            compile=compile_model,
        )
    except ScalingLabError as exc:
        fail_with(exc, _OPTIONS)

    try:  # before the corpus is built: without torch nothing here can run
        require("torch", "scalinglab train")
    except MissingDependencyError as exc:
        fail(str(exc))

    out = err_console if as_json else console
    try:
        with out.status("preparing the corpus (built once, then cached)…"):
            data = load_corpus(corpus, tokenizer=tokenizer, vocab_size=vocab_size)
    except ValueError as exc:
        fail(f"--corpus {corpus}: {exc}")

    from scalinglab.train.trainer import train as run_training

    try:
        if params is not None:
            shape = shape_for_params(
                params,
                vocab_size=data.vocab_size,
                context_length=context,
                basis=basis,
                **options,
            )
        else:
            shape = TransformerShape(
                layers,  # type: ignore[arg-type]
                d_model,  # type: ignore[arg-type]
                heads,  # type: ignore[arg-type]
                data.vocab_size,
                context,
                **options,
            )
        config = dataclasses.replace(config, shape=shape)
    except ScalingLabError as exc:
        fail_with(exc, _OPTIONS)
    except ValueError as exc:
        fail(str(exc))

    counts = count_params(shape)
    if not as_json:
        console.print(
            f"model: {shape.n_layer} layers × d_model {shape.d_model}, {shape.n_head} heads · "
            f"N = {counts.total:,} total, {counts.non_embedding:,} non-embedding · "
            f"{config.total_steps:,} steps of {config.tokens_per_step:,} tokens"
        )
    try:
        result = _run_with_bar(run_training, config, checkpoint_dir, out)
    except ValueError as exc:
        fail(str(exc))

    payload = {
        "loss": result.val_loss,
        "params": result.params_total,
        "non_embedding_params": result.params_non_embedding,
        "tokens": result.tokens,
        # As `scalinglab compute` does for a shape: per operation (Hoffmann et al. 2022, App. F).
        "flops": result.flops_counted,
        "flops_method": "per-operation (Hoffmann et al. 2022, App. F)",
        "flops_6nd": result.flops_6nd,
        "tokens_per_s": result.tokens_per_s,
        "mfu": result.mfu,
        "device": result.device,
        "precision": result.precision,
        "wall_s": result.wall_s,
        "shape": {
            "n_layer": shape.n_layer,
            "d_model": shape.d_model,
            "n_head": shape.n_head,
            "d_ff": shape.ffn_width,
            "vocab_size": shape.vocab_size,
            "context_length": shape.context_length,
        },
        "branches": [
            {"branch_tokens": b.branch_tokens, "tokens": b.tokens, "loss": b.val_loss}
            for b in result.branches
        ],
        "result": result.to_dict(),
    }
    if as_json:
        print_json(payload)
        return
    _print_tables(result)


def _run_with_bar(run_training: Any, config: Any, checkpoint_dir: Path | None, out: Console) -> Any:
    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=True,
    )
    with bar:
        task = bar.add_task("train", total=config.total_steps * config.tokens_per_step, status="")

        def on_progress(point: Any) -> None:
            status = f"loss {point.train_loss:.3f}"
            if point.val_loss is not None:
                status += f" · val {point.val_loss:.3f}"
            bar.update(task, completed=point.tokens, status=status)

        return run_training(config, checkpoint_dir=checkpoint_dir, on_progress=on_progress)


def _print_tables(result: Any) -> None:
    table = Table(title="training run", show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("validation loss (nats/token)", f"{result.val_loss:.4f}"),
        ("parameters, total", f"{result.params_total:,}"),
        ("parameters, non-embedding", f"{result.params_non_embedding:,}"),
        ("tokens", f"{result.tokens:,}"),
        ("FLOPs, 6·N·D", f"{result.flops_6nd:.3e}"),
        ("FLOPs, per operation", f"{result.flops_counted:.3e}"),
        ("tokens/s", f"{result.tokens_per_s:,.0f}"),
        ("MFU (of measured peak)", f"{result.mfu:.1%}"),
        ("device", f"{result.device}, {result.precision}"),
        ("wall time", f"{result.wall_s:.1f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if result.branches:
        branches = Table(title="WSD cooldowns branched from the stable phase")
        for col in ("branched at (tokens)", "ends at (tokens)", "validation loss"):
            branches.add_column(col, justify="right")
        for b in result.branches:
            branches.add_row(f"{b.branch_tokens:,}", f"{b.tokens:,}", f"{b.val_loss:.4f}")
        console.print(branches)
