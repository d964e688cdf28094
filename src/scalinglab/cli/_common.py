"""Helpers shared by every CLI command: one-line errors with exit code 2, JSON output,
NAME=VALUE options, checked outputs and a progress bar for staged work.

Two rules every command keeps:

- **Text shown to a person**: every string that comes from the user or their files (a file
  name, a run or sweep name, a cell, an error message) goes through :func:`esc` before Rich
  sees it, in ``console.print`` and in table cells alike, so brackets print as written and
  ``[/x]`` never raises a MarkupError.
- **Outputs**: every output path goes through :func:`output` before any work starts (see
  :mod:`scalinglab.outputs` for what is refused), and is written by
  :func:`scalinglab.outputs.write_atomic` or :func:`scalinglab.outputs.atomic_path`.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scalinglab.errors import ScalingLabError
from scalinglab.outputs import check_output
from scalinglab.units import HARDWARE_CHOICES

try:  # recent typer vendors click; older releases use click itself
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import get_current_context  # type: ignore[no-redef]
    from click.core import ParameterSource  # type: ignore[no-redef]

_COMMANDLINE = ParameterSource.COMMANDLINE

console = Console()
err_console = Console(stderr=True)

GPU_HELP = f"Accelerator: {', '.join(HARDWARE_CHOICES)}."
# A shape's vocabulary and context when the command line gives none: GPT-2's tokenizer
# (50 257 tokens) and a 2 048-token context, the setting of Hoffmann et al. (2022).
VOCAB_DEFAULT = 50257
CONTEXT_DEFAULT = 2048


# load_runs' arguments as the commands that read a runs table name them.
RUNS_OPTIONS = {"source": "RUNS", "columns": "--column"}

# The options of every command that reads a runs table (fit, backtest, report), written once.
DropTopLoss = Annotated[
    int,
    typer.Option(
        "--drop-top-loss", help="Drop the K highest-loss runs first (Besiroglu et al.: 5)."
    ),
]
ColumnMap = Annotated[
    list[str] | None,
    typer.Option(
        "--column",
        "-c",
        help="Map a canonical column to yours, e.g. -c params='Model Size' (repeatable).",
    ),
]
StoreSweep = Annotated[
    str | None,
    typer.Option("--sweep", help="From a store: only this sweep's runs (default: every sweep)."),
]
CurveSchedule = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help="How the training curves' schedule is read, for every run (with --curves; in "
        "backtest, with the procedure curves): decay (only each run's end counts: cosine, WSD "
        "cooldowns), constant (every checkpoint; a stored WSD run: its "
        "run ends only), shared (every run follows the same schedule in tokens). Default: each "
        "run's own (the table's schedule column; a store's wsd, cosine, linear read as decay), "
        "else decay.",
    ),
]


def api_default(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s argument ``name``: an option's default is the API's own."""
    return inspect.signature(function).parameters[name].default


def esc(value: object) -> str:
    """``value`` as text Rich prints as written (markup escaped): the rule for user text."""
    return escape(str(value))


def one_line(message: str) -> str:
    """``message`` on one line: a reason quoted from a library may span several."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, on one line, escaped (it quotes the user's text)."""
    # Escaped: a message quoting `pip install 'scalinglab[train]'` or a value like [1, 2] must
    # print as written, not be read as rich markup and lose its brackets.
    err_console.print(
        f"[bold red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True
    )


def fail(message: str) -> NoReturn:
    """Print one clear line to stderr and exit with code 2 (usage error), no traceback."""
    print_error(message)
    raise typer.Exit(code=2)


def option_of(field: str | None, overrides: Mapping[str, str] | None = None) -> str | None:
    """The command-line option (or argument) an API argument named ``field`` came from.

    ``overrides`` maps fields whose option is named otherwise (``{"flops": "--budget"}``);
    any other field maps to the running command's parameter of that name (``max_params`` is
    ``--max-params``, ``runs`` is ``RUNS``). ``None`` when the command has no such parameter.
    """
    if field is None:
        return None
    if overrides and field in overrides:
        return overrides[field]
    context = get_current_context(silent=True)
    for param in context.command.params if context is not None else ():
        if param.name == field:
            if param.param_type_name == "argument":
                # typer's own Argument class has no human_readable_name: its metavar (SPEC), or
                # click's form, the upper name.
                return getattr(param, "metavar", None) or param.name.upper()
            return max(param.opts, key=len)
    return None


def given(*names: str) -> list[str]:
    """Of the running command's parameters ``names``, the options set on the command line
    (as ``--option``), whatever their values: a default typed out counts as set."""
    context = get_current_context(silent=True)
    if context is None:
        return []
    out = []
    for param in context.command.params:
        if param.name in names and context.get_parameter_source(param.name) is _COMMANDLINE:
            out.append(max(param.opts, key=len))
    return out


def fail_with(error: ScalingLabError, overrides: Mapping[str, str] | None = None) -> NoReturn:
    """Fail with ``error``'s message, led by the option its ``field`` concerns (if any)."""
    option = option_of(error.field, overrides)
    fail(f"{option}: {error}" if option else str(error))


def output(
    path: Path | None,
    field: str,
    *,
    inputs: Iterable[Path | str | None] = (),
    folder: bool = False,
) -> Path | None:
    """Check an output path before any work (:func:`scalinglab.outputs.check_output`): fail
    naming the option ``field`` came from if it is a folder, a device, an input, a store, or
    in a folder that is missing or cannot be written. ``None`` passes through."""
    if path is None:
        return None
    try:
        return check_output(path, field=field, inputs=inputs, folder=folder)
    except ScalingLabError as exc:
        fail_with(exc)


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
