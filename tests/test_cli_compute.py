import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scalinglab.cli import app

runner = CliRunner()


def run_cli(*args: str):
    """Run the real console entry point, as a user would (one-line errors, exit codes)."""
    return subprocess.run(
        [sys.executable, "-c", "from scalinglab.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


def test_gpt3_json():
    result = runner.invoke(app, ["compute", "--params", "175e9", "--tokens", "300e9", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # Brown et al. 2020: 3.14e23 FLOP ≈ 3 640 PF-days; 6·N·D gives 3.15e23 ≈ 3 646.
    assert data["flops"] == pytest.approx(3.15e23, rel=0.005)
    assert data["pf_days"] == pytest.approx(3646, rel=0.005)
    for key in ("flops", "pf_days", "gpu_hours", "energy_kwh", "cost", "params", "tokens"):
        assert key in data


def test_shape_uses_per_operation_count():
    args = ["compute", "--layers", "4", "--d-model", "128", "--heads", "4", "--vocab", "65"]
    result = runner.invoke(app, [*args, "--context", "64", "--tokens", "1e6", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["params"] == 804_096
    assert data["flops"] == pytest.approx(5_220_864 * 1e6)


def test_table_output_has_units():
    result = runner.invoke(app, ["compute", "--flops", "1e21", "--gpu", "a100-80gb"])
    assert result.exit_code == 0
    assert "PF-days" in result.output and "a100-80gb-hours" in result.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--params", "0", "--tokens", "1"], "--params"),
        (["--params", "-5", "--tokens", "1"], "--params"),
        (["--params", "nan", "--tokens", "1"], "--params"),
        (["--params", "abc", "--tokens", "1"], "--params"),
        (["--flops", "1e20", "--gpu", "v100"], "--gpu"),
        (["--flops", "1e20", "--mfu", "1.5"], "--mfu"),
        (["--flops", "1e20", "--mfu", "0"], "--mfu"),
        (["--params", "1e9"], "--tokens"),
        (["--flops", "1e20", "--count", "0"], "--count"),
        (["--flops", "-1e20"], "--flops"),
        (["--layers", "2", "--d-model", "100", "--heads", "3", "--tokens", "1e9"], "--heads"),
    ],
)
def test_bad_input_one_line_exit_2(args, needle):
    result = run_cli("compute", *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_flops_with_one_of_n_and_d_gives_the_other():
    result = runner.invoke(app, ["compute", "--params", "1e9", "--flops", "6e18", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tokens"] == pytest.approx(1e9) and data["flops_method"] == "given"


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("scalinglab ")
    assert run_cli("compute", "--help").returncode == 0


@pytest.mark.parametrize("extra", [["--params", "1e9"], ["--flops", "1e21"]])
def test_a_shape_beside_params_or_flops_is_refused(extra):
    # Root cause 7: --params was silently dropped when a shape was given.
    from _main import one_line_error, run_main

    shape = ["--layers", "12", "--d-model", "768", "--heads", "12", "--tokens", "1e10"]
    line = one_line_error(run_main("compute", *shape, *extra))
    assert line.startswith(f"error: {extra[0]}: give a model shape") and "not both" in line
