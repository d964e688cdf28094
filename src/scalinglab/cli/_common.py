"""Helpers shared by every CLI command: one-line errors with exit code 2, JSON output,
NAME=VALUE options and a progress bar for staged work."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print one clear line to stderr and exit with code 2 (usage error), no traceback."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def positive(value: float | None, option: str) -> float | None:
    """Return ``value`` if it is a finite positive number (or None), else fail naming ``option``."""
    if value is None:
        return None
    if not math.isfinite(value) or value <= 0:
        fail(f"{option} must be a finite number > 0, got {value!r}")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return value


def print_json(payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON on stdout (NaN/inf become null so the output is strict JSON)."""
    typer.echo(json.dumps(_jsonable(payload), indent=2, sort_keys=False))


def parse_pairs(text: str, option: str) -> dict[str, str]:
    """``"a=1, b=2"`` as ``{"a": "1", "b": "2"}``; fail naming ``option`` on a malformed part."""
    pairs: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            fail(f"{option} takes NAME=VALUE pairs separated by commas, got {part.strip()!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def column_mapping(items: list[str] | None) -> dict[str, str]:
    """Repeated ``-c canonical=yours`` options as one mapping for :func:`scalinglab.load_runs`."""
    mapping: dict[str, str] = {}
    for item in items or []:
        mapping.update(parse_pairs(item, "--column"))
    return mapping


@contextmanager
def stage_progress(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar on stderr fed by ``update(stage, done, total)``, one row per stage (the
    fitter's bootstrap, a backtest's fits); ``None`` when disabled (``--json``)."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update
