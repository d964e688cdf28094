"""The ``scalinglab`` command: thin wrappers that parse options, call the API and print.

Each command lives in its own module and registers itself here, so the CLI mirrors the
package layout one-to-one.
"""

from __future__ import annotations

import sys
import warnings

import typer

from scalinglab import __version__
from scalinglab._optional import as_missing_dependency
from scalinglab.cli import backtest as backtest_cli
from scalinglab.cli import compute
from scalinglab.cli import demo as demo_cli
from scalinglab.cli import fit as fit_cli
from scalinglab.cli import importing as import_cli
from scalinglab.cli import plan as plan_cli
from scalinglab.cli import report as report_cli
from scalinglab.cli import sweep as sweep_cli
from scalinglab.cli import train as train_cli
from scalinglab.cli._common import err_console, print_error
from scalinglab.errors import ScalingLabError

try:  # recent typer vendors click; older releases use click itself
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_errors  # type: ignore[no-redef]

app = typer.Typer(
    name="scalinglab",
    help="Neural scaling laws as a working instrument: sweep, train, fit, plan, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scalinglab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Neural scaling laws as a working instrument: sweep, train, fit, plan, report."""


app.command("compute")(compute.compute)
app.command("fit")(fit_cli.fit)
app.command("backtest")(backtest_cli.backtest)
app.command("train")(train_cli.train)
app.add_typer(sweep_cli.app, name="sweep")
app.command("plan")(plan_cli.plan)
app.command("compare")(plan_cli.compare)
app.command("report")(report_cli.report)
app.command("import")(import_cli.import_command)
app.command("demo")(demo_cli.demo)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script (``argv``: the arguments, default ``sys.argv[1:]``).

    Click's usage errors are reduced to one line (option and reason) with exit code 2, the
    way every other bad input is reported; so is any ScalingLabError a command let through.
    """
    # numpy's RuntimeWarnings (overflow in exp, ...) speak of internals, not of the input;
    # every result the commands print is checked finite and explained instead.
    warnings.simplefilter("ignore", RuntimeWarning)
    try:
        code = app(args=argv, standalone_mode=False)
    except _click_errors.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        code = 0
    except _click_errors.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "scalinglab"
        print_error(f"{command}: {exc.format_message()}")
        code = 2
    except ImportError as exc:  # an optional dependency (torch, ray): say which extra installs it
        missing = as_missing_dependency(exc)
        if missing is None:
            raise
        print_error(str(missing))
        code = 2
    except ScalingLabError as exc:  # bad input a command did not map to its option itself
        print_error(str(exc))
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
