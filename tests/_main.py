"""Run the console script in this process, as a user would run it (one-line errors, codes)."""

from __future__ import annotations

from typer.testing import CliRunner

from scalinglab.cli import main

_runner = CliRunner()


def run_main(*args: object) -> tuple[int, str, str]:
    """``scalinglab ARGS...`` through :func:`scalinglab.cli.main` in typer's CliRunner
    isolation: (exit code, stdout, stderr). Exceptions other than SystemExit propagate."""
    with _runner.isolation() as (out, err, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, out.getvalue().decode(), err.getvalue().decode()


def one_line_error(result: tuple[int, str, str]) -> str:
    """The single stderr line of a refused command (exit code 2), else an AssertionError."""
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, f"exit {code}, stderr {err!r}"
    return lines[0]
