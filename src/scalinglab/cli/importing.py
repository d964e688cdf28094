"""``scalinglab import``: training logs from W&B, TensorBoard, MLflow, HF Trainer or a long
table into the store, with their whole curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from scalinglab.cli._common import console, err_console, esc, fail, print_json, stage_progress


def _sci(value: float) -> str:
    return f"{value:.3g}"


def _print(result: Any) -> None:
    if result.runs and not result.imported and not result.dry_run:
        console.print(
            f"nothing imported: all {len(result.runs)} runs are already in {esc(result.store)} "
            "(same sources and metadata)",
            highlight=False,
            soft_wrap=True,
        )
        return
    groups = ", ".join(sorted({r.group for r in result.runs}))
    verb = "Would import" if result.dry_run else "Imported"
    table = Table(
        title=f"{verb} into {esc(result.store)} (group {esc(groups)})",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        caption="N: parameters, D: tokens, loss: the last point, nats per token",
    )
    for column in ("run", "run_id", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("segs", "points", "N", "D", "loss"):
        table.add_column(column, justify="right", no_wrap=True)
    for run in result.runs:
        status = run.status if run.version <= 1 else f"{run.status} v{run.version}"
        table.add_row(
            esc(run.name),
            esc(run.run_id),
            esc(status),
            str(len(run.segments)),
            str(run.points),
            _sci(run.params),
            _sci(run.tokens),
            f"{run.loss_nats:.3f}",
        )
    if result.runs:
        console.print(table)
    by_metric: dict[str, list[str]] = {}
    for run in result.runs:
        by_metric.setdefault(run.metric, []).append(run.name)
    for metric, names in by_metric.items():
        console.print(f"loss: {esc(metric)} ({esc(', '.join(names))})", highlight=False)
    for job in result.stitched:
        segments = job["segments"]
        console.print(
            f"stitched: {esc(job['job'])}: {len(segments)} segments "
            f"({esc(segments[0])} … {esc(segments[-1])}) "
            f"into one curve; {len(job['overlaps'])} overlaps",
            highlight=False,
        )
        for overlap in job["overlaps"]:
            console.print(f"  overlap: {esc(overlap)} (the later segment wins)", highlight=False)
    for run in result.runs:
        if run.note:
            console.print(f"note: {esc(run.name)}: {esc(run.note)}", highlight=False)
        if run.extra_metrics:
            console.print(
                f"also stored for {esc(run.name)}: {esc(', '.join(run.extra_metrics))}",
                highlight=False,
            )
    for name, reason in result.skipped:
        console.print(f"skipped: {esc(name)}: {esc(reason)}", highlight=False)
    for note in result.notes:
        console.print(f"note: {esc(note)}", highlight=False)
    verb = "would write" if result.dry_run else "wrote"
    console.print(
        f"{verb} {len(result.imported)} runs and {result.points:,} curve points to "
        f"{esc(result.store)}",
        highlight=False,
    )


def import_command(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Logs: W&B panel or history exports, long tables (CSV, TSV, Parquet, JSONL), "
            "TensorBoard folders, MLflow mlruns/ folders, trainer_state.json.",
            show_default=False,
        ),
    ],
    meta: Annotated[
        Path | None,
        typer.Option("--meta", help="META.toml: params, tokens per step, N basis... per run."),
    ] = None,
    store: Annotated[Path, typer.Option("--store", help="The store to write.")] = Path(
        "scalinglab.db"
    ),
    metric: Annotated[
        str | None,
        typer.Option("--metric", "-m", help="The loss metric: a name or a glob (eval/*/loss)."),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="The sweep the runs join (default: imported).")
    ] = None,
    stitch: Annotated[
        str | None,
        typer.Option(
            "--stitch",
            help="Regex with (?P<job>...) and (?P<segment>...) joining resumed runs "
            "(default: W&B's <job>-run-NNN); '' joins nothing.",
        ),
    ] = None,
    params: Annotated[
        int | None, typer.Option("--params", help="Parameters N of every run.")
    ] = None,
    param_basis: Annotated[
        str | None, typer.Option("--param-basis", help="total or non_embedding.")
    ] = None,
    tokens_per_step: Annotated[
        int | None, typer.Option("--tokens-per-step", help="Tokens per optimizer step.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Sequences per optimizer step.")
    ] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", help="Tokens per sequence.")] = None,
    flops_method: Annotated[
        str | None, typer.Option("--flops-method", help="6nd or per_operation.")
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="The LR schedule (cosine, linear, wsd...).")
    ] = None,
    schedule_steps: Annotated[
        int | None, typer.Option("--schedule-steps", help="The schedule's length in steps.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and check, write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Import training logs and their whole curves into the store.

    Resumed W&B segments (<job>-run-NNN) join into one curve; what the logs do not say
    (parameters, tokens per step, how N and FLOPs are counted) comes from --meta or flags,
    never guessed. The same sources imported twice add nothing; sources are only read.

    Example: scalinglab import wandb_export.csv --meta examples/olmo_import.toml
    """
    from scalinglab.errors import ScalingLabError
    from scalinglab.importers import import_runs

    flags = {
        "params": params,
        "param_basis": param_basis,
        "tokens_per_step": tokens_per_step,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "flops_method": flops_method,
        "schedule": schedule,
        "schedule_steps": schedule_steps,
    }
    options: dict[str, Any] = {}
    if stitch is not None:
        options["stitch_pattern"] = stitch or None
    try:
        # A bar only on a terminal: piped output (and a one-line error) stays clean.
        with stage_progress(not as_json and err_console.is_terminal) as update:
            result = import_runs(
                sources,
                store=store,
                meta=meta,
                metric=metric,
                group=group,
                flags=flags,
                dry_run=dry_run,
                progress=update,
                **options,
            )
    except ScalingLabError as exc:  # every import error is one line naming what to fix
        fail(str(exc))
    if as_json:
        print_json(result.to_dict())
    else:
        _print(result)
