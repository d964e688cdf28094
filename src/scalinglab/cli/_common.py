"""Helpers shared by every CLI command: one-line errors with exit code 2, JSON output."""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

import typer
from rich.console import Console

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
