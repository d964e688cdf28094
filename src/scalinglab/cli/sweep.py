"""``scalinglab sweep``: plan, run, inspect and export training sweeps.

Thin by design: parse, call :mod:`scalinglab.sweep`, print.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from scalinglab.cli._common import console, err_console, esc, fail, print_json
from scalinglab.cli.suggest import suggest as suggest_command
from scalinglab.cli.sweep_store import export_command, status_command

app = typer.Typer(
    name="sweep",
    help="Design a sweep under a budget, run it locally or on Ray, store every run, export.",
    no_args_is_help=True,
    add_completion=False,
)

_SPEC_HELP = "The sweep spec (TOML); see `scalinglab sweep plan --help` and the README."


def _load(spec_path: Path) -> Any:
    from scalinglab.sweep.spec import SpecError, load_spec

    try:
        return load_spec(spec_path)
    except SpecError as exc:  # the file's own errors already start with its name
        message = str(exc)
        fail(message if message.startswith(f"{spec_path}:") else f"{spec_path}: {message}")


def _plan(spec: Any, spec_path: Path, workers: int | None, probe: bool) -> Any:
    """Design and budget the sweep; measure throughput first when asked or needed."""
    from scalinglab.sweep.backends import threads_per_worker
    from scalinglab.sweep.budget import plan_sweep
    from scalinglab.sweep.probe import measure_throughput
    from scalinglab.sweep.spec import SpecError

    workers = workers or spec.execution.workers
    probe = probe or spec.budget.wall_clock_s is not None
    # The probe times scalinglab's own trainer: a command run's speed is its command's.
    probe = probe and spec.command is None

    def measure(runs: list) -> Any:
        with err_console.status(f"measuring training speed ({len(runs)} runs planned)..."):
            return measure_throughput(runs, threads=threads_per_worker(workers))

    try:
        with err_console.status("designing the sweep (shapes, corpus)..."):
            return plan_sweep(spec, workers=workers, throughput=measure if probe else None)
    except SpecError as exc:  # BudgetError included
        fail(f"{spec_path}: {exc}")


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _plan_payload(plan: Any) -> dict[str, Any]:
    spec = plan.spec
    runs = []
    for r in plan.runs:
        runs.append(
            {
                "run_id": r.key[:12],
                "key": r.key,
                "compute_level": r.compute_level,
                "params": r.params,
                "params_total": r.params_total,
                "params_non_embedding": r.params_non_embedding,
                "n_layer": r.shape.n_layer,
                "d_model": r.shape.d_model,
                "n_head": r.shape.n_head,
                "tokens": r.tokens,
                "tokens_per_param": r.tokens / r.params,
                "flops": r.flops,
                "cost_flops": r.cost_flops,
                "resume_tokens": r.resume_tokens,  # starts from a kept WSD checkpoint there
                "est_s": plan.run_seconds(r),
                "branches": [
                    {"branch_tokens": b.branch_tokens, "tokens": b.tokens, "flops": b.flops}
                    for b in r.branches
                ],
            }
        )
    cov = plan.coverage
    return {
        "sweep": spec.name,
        "design": spec.design.kind,
        "param_basis": spec.model.param_basis,
        "flops_method": spec.model.flops_method,
        "runs": runs,
        "n_runs": len(plan.runs),
        "n_points": plan.points,
        "total_flops": plan.total_flops,
        "budget_flops": spec.budget.flops,
        "budget_wall_clock_s": spec.budget.wall_clock_s,
        "workers": plan.workers,
        "est_wall_s": plan.est_wall_s,
        "trimmed": list(plan.trimmed),
        "notes": list(plan.notes),
        "coverage": {
            "points": cov.points,
            "compute_decades": cov.compute_decades,
            "sizes_per_level": None
            if cov.sizes_per_level is None
            else {f"{k:.6g}": v for k, v in cov.sizes_per_level.items()},
            "distinct_params": cov.distinct_params,
            "distinct_tokens": cov.distinct_tokens,
            "tokens_per_param_decades": cov.ratio_decades,
            "log_correlation": cov.log_correlation,
            "warnings": list(cov.warnings),
        },
    }


def _print_plan(plan: Any) -> None:
    spec = plan.spec
    basis = "non-embedding" if spec.model.param_basis == "non_embedding" else "total"
    table = Table(
        title=f"Sweep {esc(repr(spec.name))}: {spec.design.kind}, N = {basis} parameters, "
        f"FLOPs by {spec.model.flops_method}"
    )
    for name in ("#", "C level", "N", "shape L×d/h", "D", "D/N", "FLOPs", "est. time"):
        table.add_column(name, justify="right")
    for i, r in enumerate(sorted(plan.runs, key=lambda r: (r.compute_level or 0, r.params)), 1):
        s = r.shape
        branches = f" +{len(r.branches)} cooldowns" if r.branches else ""
        table.add_row(
            str(i),
            "-" if r.compute_level is None else f"{r.compute_level:.3g}",
            f"{r.params:,}",
            f"{s.n_layer}×{s.d_model}/{s.n_head}",
            f"{r.tokens:,}{branches}",
            f"{r.tokens / r.params:.1f}",
            f"{r.cost_flops:.3g}",
            _fmt_s(plan.run_seconds(r)),
        )
    console.print(table)
    budget = spec.budget
    if budget.flops is not None:
        limit = f"budget {budget.flops:.3g} FLOP"
    elif budget.wall_clock_s is not None:
        limit = f"budget {_fmt_s(budget.wall_clock_s)} wall clock"
    else:
        limit = "no budget set"
    console.print(
        f"{len(plan.runs)} runs, {plan.points} points, total {plan.total_flops:.3g} FLOP "
        f"({limit}); "
        f"estimated wall time on {plan.workers} worker(s): {_fmt_s(plan.est_wall_s)}",
        highlight=False,
    )
    if plan.throughput is not None:
        tp = plan.throughput
        console.print(
            f"throughput measured on {tp.device} with {tp.threads} thread(s) per worker: "
            + ", ".join(f"{v:,.0f} tokens/s" for v in tp.tokens_per_s),
            highlight=False,
        )
    for reason in plan.trimmed:
        console.print(f"[yellow]trimmed:[/] {esc(reason)}", highlight=False)
    for note in plan.notes:
        console.print(f"[dim]note:[/] {esc(note)}", highlight=False)
    cov = plan.coverage
    console.print(
        f"coverage: {cov.compute_decades:.2f} decades of compute, {cov.distinct_params} sizes, "
        f"{cov.distinct_tokens} lengths, D/N over {cov.ratio_decades:.2f} decades",
        highlight=False,
    )
    for warning in cov.warnings:
        console.print(f"[yellow]warning:[/] {esc(warning)}", highlight=False)


@app.command("plan")
def plan_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help=_SPEC_HELP)],
    workers: int | None = typer.Option(
        None, "--workers", "-k", help="Workers the estimate assumes (default: the spec's)."
    ),
    probe: bool = typer.Option(
        True, "--probe/--no-probe", help="Time a few training steps to estimate wall time."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Print every planned run, the total FLOPs and the estimated wall time; train nothing.

    A design over budget is trimmed or refused (budget.on_over) with the reason, and the
    coverage check warns when the design is too thin to separate the N and D exponents.

    Example: scalinglab sweep plan examples/isoflop_stdlib.toml
    """
    if workers is not None and workers < 1:
        fail(f"--workers must be an integer ≥ 1, got {workers}")
    spec = _load(spec_path)
    plan = _plan(spec, spec_path, workers, probe)
    if as_json:
        print_json(_plan_payload(plan))
    else:
        _print_plan(plan)


class _Bar:
    """A rich progress bar over the sweep's FLOPs: runs done and remaining, ETA, losses."""

    def __init__(self, plan: Any, pending: list, *, quiet: bool, to_stderr: bool) -> None:
        self.cost = {r.key: r.cost_flops for r in pending}
        self.per_token = {r.key: r.cost_flops / max(1, r.cost_tokens) for r in pending}
        # A run continuing a kept WSD checkpoint costs (and reports) its tokens after it only.
        self.start = {r.key: r.resume_tokens for r in pending}
        self.done_flops: dict[str, float] = {}
        self.total_runs = len(pending)
        self.done = self.failed = 0
        self.last = ""
        self.live: dict[str, float] = {}
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[runs]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=err_console if to_stderr else console,
            disable=quiet,
            transient=False,
        )
        self.task = self.progress.add_task(
            plan.spec.name,
            total=sum(self.cost.values()) or 1.0,
            runs=self._runs_text(),
            losses="",
        )

    def _runs_text(self) -> str:
        left = self.total_runs - self.done - self.failed
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.total_runs} runs done, {left} left{failed}"

    def _losses_text(self) -> str:
        live = " ".join(f"{v:.3f}" for v in list(self.live.values())[-4:])
        parts = [p for p in (self.last, f"live {live}" if live else "") if p]
        return " | ".join(parts)

    def __call__(self, event: Any) -> None:
        key = event.run.key
        if event.kind == "progress" and event.point is not None:
            tokens = max(0.0, float(event.point.get("tokens") or 0) - self.start.get(key, 0))
            flops = min(self.cost.get(key, 0.0), tokens * self.per_token.get(key, 0.0))
            self.done_flops[key] = max(self.done_flops.get(key, 0.0), flops)
            loss = event.point.get("val_loss") or event.point.get("train_loss")
            if loss is not None:
                self.live[key] = float(loss)
        elif event.kind == "finished":
            self.done += 1
            self.done_flops[key] = self.cost.get(key, 0.0)
            self.live.pop(key, None)
            if event.loss is not None:
                r = event.run
                self.last = f"last: loss {event.loss:.3f} at N={r.params:.3g}, D={r.tokens:.3g}"
        elif event.kind in ("retry", "failed"):
            self.done_flops[key] = 0.0
            self.live.pop(key, None)
            if event.kind == "failed":
                self.failed += 1
            line = (event.error or "").strip().splitlines()[-1:] or ["?"]
            self.progress.console.print(
                f"[yellow]{event.kind}:[/] run {key[:12]} (attempt {event.attempt}): {line[0]}",
                highlight=False,
            )
        self.progress.update(
            self.task,
            completed=sum(self.done_flops.values()),
            runs=self._runs_text(),
            losses=self._losses_text(),
        )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so the driver stops its workers and keeps finished runs."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("run")
def run_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help=_SPEC_HELP)],
    executor: str | None = typer.Option(
        None, "--executor", "-e", help="local (worker processes) or ray (default: the spec's)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray only: cluster address (default: a private local Ray)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-k", help="Runs in parallel (default: the spec's execution.workers)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="Torch threads per run (default: cores split over the workers)."
    ),
    store_path: Annotated[
        Path | None,
        typer.Option("--store", help="The store (default: the spec's sweep.store)."),
    ] = None,
    max_retries: int | None = typer.Option(
        None, "--max-retries", help="Retries of a failed run (default: the spec's)."
    ),
    checkpoints: bool = typer.Option(
        True,
        "--checkpoints/--no-checkpoints",
        help="Checkpoint runs beside the store so a killed run resumes mid-way (local only).",
    ),
    train_fn: str | None = typer.Option(
        None,
        "--train-fn",
        metavar="MODULE:FUNCTION",
        help="A training function with scalinglab.train.trainer.train's signature, importable "
        "by the workers (default: scalinglab's trainer).",
    ),
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir",
            help="Command runs: where each run's folder (logs, losses, its own output) goes "
            "(default: <store>.runs; on a Ray cluster, a shared filesystem).",
        ),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    """Train every planned run the store does not hold finished, with a live progress bar.

    Running it again after Ctrl-C, a killed driver or a crashed worker does only what is
    missing: no finished run is lost or repeated.

    Example: scalinglab sweep run examples/isoflop_stdlib.toml --workers 2
    """
    from scalinglab.store import Store, StoreError
    from scalinglab.sweep.executors import (
        EXECUTORS,
        default_ray_temp_dir,
        iter_pending,
        run_sweep,
    )
    from scalinglab.sweep.spec_values import SpecError

    spec = _load(spec_path)
    executor = executor or spec.execution.executor
    if executor not in EXECUTORS:
        fail(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None and executor != "ray":
        fail("--address needs --executor ray")
    for value, option in ((workers, "--workers"), (threads, "--threads")):
        if value is not None and value < 1:
            fail(f"{option} must be an integer ≥ 1, got {value}")
    if max_retries is not None and max_retries < 0:
        fail(f"--max-retries must be an integer ≥ 0, got {max_retries}")
    if train_fn is not None and spec.command is not None:
        fail("--train-fn: this spec runs its [train] command; --train-fn is for built-in runs")
    function = None if train_fn is None else _import_function(train_fn)
    plan = _plan(spec, spec_path, workers, probe=False)
    path = store_path or Path(spec.store)
    try:
        store = Store(path)
    except StoreError as exc:
        fail(f"--store: {exc}")
    ckpt_root = path.with_name(path.name + ".ckpt") if checkpoints and executor == "local" else None
    # A private local Ray keeps its sockets and logs in a short temporary folder, removed after.
    ray_tmp = default_ray_temp_dir() if executor == "ray" and address is None else None
    with store, _removed_after(ray_tmp):
        pending = list(iter_pending(plan, store))
        bar = _Bar(plan, pending, quiet=False, to_stderr=as_json)
        try:
            with _sigterm_as_interrupt(), bar.progress:
                summary = run_sweep(
                    plan,
                    store,
                    executor=executor,
                    workers=workers,
                    threads=threads,
                    max_retries=max_retries,
                    address=address,
                    checkpoint_root=ckpt_root,
                    on_event=bar,
                    train_fn=function,
                    ray_temp_dir=ray_tmp,
                    run_root=runs_dir,
                )
        except StoreError as exc:
            fail(f"--store: {exc}")
        except SpecError as exc:  # resources the machine lacks (execution.gpus_per_run)
            fail(f"{spec_path}: {exc}")
        except KeyboardInterrupt:
            err_console.print(
                f"interrupted: {bar.done} run(s) finished in this call are kept in {path}; "
                "run the same command again to do the rest",
                highlight=False,
            )
            raise typer.Exit(code=130) from None
    payload = {
        "sweep": spec.name,
        "store": str(path),
        "planned": summary.planned,
        "already_finished": summary.already_finished,
        "finished": summary.finished,
        "failed": [k[:12] for k in summary.failed],
        "retries": summary.retries,
        "wall_s": summary.wall_s,
        "cpu_s": summary.cpu_s,
        "dedicated_wall_s": summary.dedicated_wall_s,
        "executor": summary.executor,
        "workers": summary.workers,
        "threads": summary.threads,
        "complete": summary.complete,
    }
    if as_json:
        print_json(payload)
    else:
        console.print(
            f"{summary.finished} run(s) trained, {summary.already_finished} already in {path}, "
            f"{len(summary.failed)} failed; {_fmt_s(summary.wall_s)} on {summary.workers} "
            f"{summary.executor} worker(s) × {summary.threads} thread(s)",
            highlight=False,
        )
        if summary.dedicated_wall_s is not None:
            console.print(
                f"the runs used {summary.cpu_s:,.0f} CPU-seconds: "
                f"{_fmt_s(summary.dedicated_wall_s)} on cores of their own",
                highlight=False,
            )
        if summary.complete:
            console.print(
                f"sweep complete: fit it with `scalinglab fit {esc(path)}`", highlight=False
            )
    if summary.failed:
        raise typer.Exit(code=1)


@contextlib.contextmanager
def _removed_after(folder: str | None) -> Iterator[None]:
    try:
        yield
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _import_function(target: str) -> Any:
    import importlib

    module, _, name = target.partition(":")
    if not module or not name:
        fail(f"--train-fn must be MODULE:FUNCTION, got {target!r}")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        fail(f"--train-fn: cannot import {target!r}: {exc}")
    if not callable(function):
        fail(f"--train-fn: {target!r} is not callable")
    return function


app.command("status")(status_command)
app.command("export")(export_command)
app.command("suggest")(suggest_command)
