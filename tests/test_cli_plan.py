"""``scalinglab plan`` and ``scalinglab compare`` from the command line.

Reference: Besiroglu et al. (2024) refit Chinchilla's law to E = 1.8172, A = 482.01,
B = 2085.43, α = 0.3478, β = 0.3658; at 5.76·10^23 FLOP the compute-optimal run has
N ≈ 7.22·10^10 and D ≈ 1.33·10^12 (the figures the issue for this command quotes).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.fitting import Fit

runner = CliRunner()
BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real console entry point, as a user would (one-line errors, exit codes)."""
    return subprocess.run(
        [sys.executable, "-c", "from scalinglab.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def fit_path(tmp_path):
    path = tmp_path / "besiroglu.json"
    Fit.from_params("chinchilla", BESIROGLU).save(path)
    return path


@pytest.fixture
def boot_path(tmp_path):
    rng = np.random.default_rng(0)
    point = np.array(list(BESIROGLU.values()))
    fit = dataclasses.replace(
        Fit.from_params("chinchilla", BESIROGLU),
        bootstrap_params=point * (1 + 0.02 * rng.standard_normal((100, 5))),
    )
    path = tmp_path / "boot.json"
    fit.save(path)
    return path


def plan_json(*args: str) -> dict:
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plan_json_besiroglu(fit_path):
    data = plan_json("--fit", str(fit_path), "--budget", "5.76e23")
    assert data["params"] == pytest.approx(7.22e10, rel=0.01)
    assert data["tokens"] == pytest.approx(1.33e12, rel=0.01)
    assert data["tokens_per_param"] == pytest.approx(18, rel=0.03)
    assert data["flops"] == pytest.approx(5.76e23)
    assert data["pf_days"] == pytest.approx(5.76e23 / 8.64e19)
    for key in ("loss", "gpu_hours", "energy_kwh", "extrapolation_params", "warnings"):
        assert key in data


def test_budget_units_agree(fit_path):
    base = plan_json("--fit", str(fit_path), "--budget", "5.76e23")
    pf_days = plan_json("--fit", str(fit_path), "--budget", str(5.76e23 / 8.64e19), "-u", "pf-days")
    assert pf_days["params"] == pytest.approx(base["params"], rel=1e-9)
    # 404 285 H100-hours at MFU 0.4 (989.4 TFLOP/s dense BF16) is 5.76e23 FLOP.
    hours = 5.76e23 / (989.4e12 * 0.4) / 3600
    gpu = plan_json("--fit", str(fit_path), "--budget", str(hours), "-u", "gpu-hours")
    assert gpu["flops"] == pytest.approx(5.76e23, rel=1e-9)
    usd = plan_json("--fit", str(fit_path), "--budget", str(2 * hours), "-u", "usd", "--price", "2")
    assert usd["flops"] == pytest.approx(5.76e23, rel=1e-9)
    assert usd["cost"] == pytest.approx(2 * hours, rel=1e-9)


def test_plan_limits(fit_path):
    base = plan_json("--fit", str(fit_path), "--budget", "5.76e23")
    capped = plan_json("--fit", str(fit_path), "--budget", "5.76e23", "--max-params", "3e10")
    assert capped["params"] == 3e10 and capped["binding"] == "max_params"
    assert capped["tokens"] > base["tokens"] and capped["loss"] > base["loss"]
    assert capped["loss_penalty"] == pytest.approx(capped["loss"] - base["loss"])
    data = plan_json("--fit", str(fit_path), "--budget", "5.76e23", "--max-unique-tokens", "4e11")
    assert data["tokens"] == pytest.approx(4e11) and data["epochs"] == pytest.approx(1.0)
    assert any("not modelled" in w for w in data["warnings"])
    inference = plan_json(
        "--fit", str(fit_path), "--budget", "5.76e23", "--inference-tokens", "1e13"
    )
    assert inference["params"] < base["params"] and inference["tokens"] > base["tokens"]
    assert inference["loss"] == pytest.approx(base["loss"], rel=1e-9)


def test_target_loss_round_trip(fit_path):
    need = plan_json("--fit", str(fit_path), "--target-loss", "2.0")
    assert need["loss"] == pytest.approx(2.0)
    back = plan_json("--fit", str(fit_path), "--budget", repr(need["flops"]))
    assert back["loss"] == pytest.approx(2.0, rel=1e-10)


def test_plan_table_with_intervals(boot_path):
    result = runner.invoke(app, ["plan", "--fit", str(boot_path), "--budget", "1e22"])
    assert result.exit_code == 0, result.output
    assert "parameters N" in result.output and "90% interval" in result.output
    assert "PF-days" in result.output


def test_frontier_json_and_csv(fit_path, tmp_path):
    out = tmp_path / "frontier.csv"
    data = plan_json("--fit", str(fit_path), "--frontier", "1e20:1e24:5", "--csv", str(out))
    rows = data["rows"]
    assert len(rows) == 5
    assert [r["budget_flops"] for r in rows] == pytest.approx(list(np.geomspace(1e20, 1e24, 5)))
    table = pd.read_csv(out)
    assert list(table["params"]) == pytest.approx([r["params"] for r in rows])
    result = runner.invoke(app, ["plan", "--fit", str(fit_path), "--frontier", "1e20:1e24"])
    assert result.exit_code == 0 and "frontier" in result.output


def gained_fit(path, k: float) -> None:
    """A fit worth k× compute: A·k^(-α/2), B·k^(-β/2), i.e. L_A(√k·N, √k·D)."""
    p = dict(BESIROGLU)
    p["A"] *= k ** (-p["alpha"] / 2)
    p["B"] *= k ** (-p["beta"] / 2)
    Fit.from_params("chinchilla", p).save(path)


def test_compare(fit_path, tmp_path):
    result = runner.invoke(
        app, ["compare", "--fit", str(fit_path), "--fit", str(fit_path), "--at", "1e21", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["multiplier"] == pytest.approx(1.0)
    better = tmp_path / "better.json"
    gained_fit(better, 2.5)
    args = ["compare", "--fit", str(fit_path), "--fit", str(better), "--at", "1e21"]
    data = json.loads(runner.invoke(app, [*args, "--at", "1e24", "--json"]).stdout)
    assert data["multiplier"] == pytest.approx([2.5, 2.5])
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "2.5" in table.output


def test_help():
    for command in ("plan", "compare"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "--fit" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--budget", "-1"], "--budget"),
        (["--budget", "1e21", "--unit", "parsecs"], "--unit"),
        (["--target-loss", "1.8"], "--target-loss"),
        (["--target-loss", "1.8172"], "--target-loss"),
        (["--budget", "1e21", "--max-params", "0"], "--max-params"),
        (["--budget", "1e21", "--gpu", "tpu-v9"], "--gpu"),
        (["--budget", "1e21", "--unit", "usd"], "--price"),
        (["--budget", "1e21", "--mfu", "2"], "--mfu"),
        (["--budget", "1e21", "--count", "0"], "--count"),
        (["--budget", "1e21", "--pue", "0.5"], "--pue"),
        (["--budget", "1e21", "--level", "1.5"], "--level"),
        (["--budget", "1e21", "--inference-tokens", "-1"], "--inference-tokens"),
        (["--frontier", "1e19:1e21", "--unit", "gpu-hours", "--gpu", "x"], "--gpu"),
        (["--budget", "1e21", "--target-loss", "2"], "exactly one"),
    ],
)
def test_bad_input_one_line_exit_2(fit_path, args, option):
    result = runner.invoke(app, ["plan", "--fit", str(fit_path), *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], result.stderr
    assert result.stdout == ""


def test_real_entry_point_exit_2(fit_path):
    result = run_cli("plan", "--fit", str(fit_path), "--target-loss", "1.5")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unreachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_fit_of_another_law_exit_2(tmp_path):
    path = tmp_path / "power.json"
    Fit.from_params(
        "power", {"E": 1.7, "A": 400.0, "alpha": 0.3}, law_options={"x": "params"}
    ).save(path)
    result = runner.invoke(app, ["plan", "--fit", str(path), "--budget", "1e21"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--fit" in result.stderr
    assert "params only" in result.stderr
    missing = runner.invoke(app, ["plan", "--fit", str(tmp_path / "no.json"), "--budget", "1"])
    assert missing.exit_code == 2 and "no fit file" in missing.stderr
    # A fit.json whose parameters lack one the law needs.
    broken = json.loads(Fit.from_params("chinchilla", BESIROGLU).to_json())
    del broken["params"]["beta"]
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken))
    result = runner.invoke(app, ["plan", "--fit", str(bad), "--budget", "1e21"])
    assert result.exit_code == 2 and "--fit" in result.stderr and "beta" in result.stderr


def test_compare_bad_input(fit_path):
    result = runner.invoke(app, ["compare", "--fit", str(fit_path), "--at", "1e21"])
    assert result.exit_code == 2 and "exactly twice" in result.stderr
    args = ["compare", "--fit", str(fit_path), "--fit", str(fit_path), "--at", "-3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--at" in result.stderr
