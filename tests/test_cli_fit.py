"""``scalinglab fit``: JSON fields, fit files read back, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab import load_fit
from scalinglab.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def epoch_csv(shared_data):
    return str(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-c", "from scalinglab.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


def test_json_fields(epoch_csv):
    result = runner.invoke(app, ["fit", epoch_csv, "--drop-top-loss", "5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["law"] == "chinchilla"
    assert set(data["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert data["n_runs"] == 240
    assert data["objective"] > 0 and data["ci"] is None and data["holdout"] is None
    assert "bootstrap_params" not in data  # the resamples go to --out, not to the screen


def test_bootstrap_holdout_and_out(epoch_csv, tmp_path):
    out = tmp_path / "fit.json"
    args = ["fit", epoch_csv, "--drop-top-loss", "5", "--bootstrap", "40", "--holdout-top", "0.1"]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["ci"]) == {"E", "A", "B", "alpha", "beta", "a"}
    assert data["holdout"]["n_holdout"] == 24
    fit = load_fit(out)
    assert fit.bootstrap_params.shape == (40, 5)
    assert fit.params["E"] == pytest.approx(data["params"]["E"])
    lo, hi = fit.prediction_interval(0.9, params=7e10, tokens=1.4e12)
    assert lo < hi


def test_table_output_and_prediction(epoch_csv):
    result = runner.invoke(
        app,
        [
            "fit",
            epoch_csv,
            "--drop-top-loss",
            "5",
            "--bootstrap",
            "30",
            "--predict",
            "params=7e10,tokens=1.4e12",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "L(N, D) = E + A/N^alpha + B/D^beta" in result.output
    assert "a (derived)" in result.output and "95% CI" in result.output
    assert "predicted loss at params=7e+10, tokens=1.4e+12" in result.output


def test_power_law_and_columns(tmp_path):
    rng = np.random.default_rng(0)
    flops = np.geomspace(1e17, 1e21, 30)
    frame = pd.DataFrame(
        {
            "compute_budget": flops,
            "nats": (1.7 + 2e3 / flops**0.15) * np.exp(rng.normal(0, 0.003, 30)),
        }
    )
    frame["size"] = 1e8
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    result = runner.invoke(
        app,
        [
            "fit",
            str(path),
            "--law",
            "power",
            "--x",
            "flops",
            "-c",
            "flops=compute_budget",
            "-c",
            "loss=nats",
            "-c",
            "params=size",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["law_options"] == {"x": "flops", "fix_E": False}
    assert data["params"]["alpha"] == pytest.approx(0.15, abs=0.03)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--law", "gompertz"], "--law: unknown law 'gompertz'; choose one of"),
        (["--loss", "l1"], "--loss: loss must be one of"),
        (["--x", "flops"], "--x applies only to --law power, broken-power"),
        (["--fix-e", "--law", "broken-power"], "--fix-e applies only to --law power"),
        (["--law", "power", "--x", "steps"], "--x: power law: x must be one of"),
        (["--holdout-top", "1.5"], "--holdout-top: holdout_top must be a fraction in (0, 1)"),
        (["--holdout-above", "1e30"], "no run above 1e+30 FLOP"),
        (["--bootstrap", "-1"], "--bootstrap: bootstrap must be a whole number >= 0"),
        (["--bootstrap", "2", "--bootstrap-by", "seed"], "--bootstrap-by: "),
        (["--level", "1.5"], "--level: "),
        (["--drop-top-loss", "-1"], "--drop-top-loss: "),
        (["--param-basis", "some"], "--param-basis: "),
        (["--law", "data-constrained"], "needs the column(s) unique_tokens"),
        (["--predict", "params=7e10,steps=3"], "--predict: unknown input 'steps'"),
        (["-c", "params"], "--column takes NAME=VALUE pairs"),
    ],
)
def test_bad_options_one_line(epoch_csv, args, needle):
    result = runner.invoke(app, ["fit", epoch_csv, *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert needle in lines[0]


def test_bad_cell_names_row_and_column(tmp_path):
    frame = pd.DataFrame({"N": [1e8, 2e8, 4e8], "D": [1e9, 2e9, 4e9], "loss": [3.0, "oops", 2.8]})
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    result = run_cli("fit", str(path))
    assert result.returncode == 2
    assert "row 2, column 'loss': 'oops' is not a number" in result.stderr
    missing = runner.invoke(app, ["fit", str(tmp_path / "absent.csv")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_implausible_fit_is_flagged(shared_data, tmp_path):
    # Porian et al.'s tuned setup, fitted below 2e18 FLOP only: the Chinchilla form answers with
    # an exponent above 1, which the table output must not present as a plain result.
    frame = pd.read_csv(shared_data / "porian_isoflop" / "porian_isoflop_points.csv")
    path = tmp_path / "tuned.csv"
    frame[frame["config"] == "rw|tuned|short|const|standard|val"].to_csv(path, index=False)
    result = runner.invoke(app, ["fit", str(path), "--holdout-above", "2e18"])
    assert result.exit_code == 0, result.output
    assert "warning: implausible exponent alpha" in result.output
    data = json.loads(
        runner.invoke(app, ["fit", str(path), "--holdout-above", "2e18", "--json"]).output
    )
    assert data["reliable"] is False
    assert data["holdout"]["mean_abs_rel_error"] > 0.05


def test_a_named_procedure_reports_its_choice_and_a_wider_interval(epoch_csv, tmp_path):
    out = tmp_path / "fit.json"
    args = ["fit", epoch_csv, "--procedure", "besiroglu2024", "--bootstrap", "20"]
    args += ["--predict", "params=7e10,tokens=1.4e12", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["procedure"]["procedure"] == data["procedure"]["chosen"] == "besiroglu2024"
    assert data["procedure"]["n_runs"] == 245  # the procedure drops its own outliers
    pred = data["prediction"]
    lo, hi = pred["interval"]
    assert lo < pred["loss"] < hi
    # The interval adds scatter and extrapolation error to the parameters' uncertainty.
    plain_lo, plain_hi = load_fit(out).prediction_interval(0.95, params=7e10, tokens=1.4e12)
    assert hi - lo > plain_hi - plain_lo


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--law", "power"], "--law"),
        (["--loss", "mse", "--holdout-top", "0.1"], "--loss, --holdout-top"),
    ],
)
def test_a_procedure_refuses_options_it_would_ignore(epoch_csv, extra, named):
    result = run_cli("fit", epoch_csv, "--procedure", "auto", *extra)
    assert result.returncode == 2
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_procedure_is_named(epoch_csv):
    result = run_cli("fit", epoch_csv, "--procedure", "magic")
    assert result.returncode == 2 and "magic" in result.stderr and "auto" in result.stderr


def test_every_registered_law_and_loss_is_offered():
    # The choices come from the registries, so a law registered there is accepted here.
    from scalinglab.fitting import LOSSES
    from scalinglab.laws import LAWS

    text = " ".join(runner.invoke(app, ["fit", "--help"], terminal_width=400).output.split())
    for name in (*LAWS, *LOSSES):
        assert name in text


def test_broken_power_law_fits_from_the_command_line(epoch_csv):
    result = runner.invoke(app, ["fit", epoch_csv, "--law", "broken-power", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["law"] == "broken-power"
    assert data["law_options"] == {"x": "flops", "smoothness": 1.0}  # the law's own defaults
    assert set(data["params"]) == {"E", "A", "alpha", "x_b", "delta"}


def test_a_default_typed_out_still_clashes_with_a_procedure(epoch_csv):
    # "Set on the command line" is what counts, not "differs from the default".
    result = runner.invoke(app, ["fit", epoch_csv, "--procedure", "auto", "--loss", "huber"])
    assert result.exit_code == 2 and "drop --loss" in result.output


def test_sweep_reads_one_sweep_of_a_store(tmp_path):
    from test_curves import two_sweep_store

    path = str(two_sweep_store(tmp_path / "s.db"))
    result = runner.invoke(app, ["fit", path, "--sweep", "s1", "-B", "0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_runs"] == 12
    result = runner.invoke(app, ["fit", path, "--sweep", "s2", "--curves", "-B", "0"])
    assert result.exit_code == 2  # three runs' ends: too few for the law, said in one line
    assert "got 3" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    for args, needle in [
        ([path, "--sweep", "nope"], "--sweep: " + path + ": no sweep named 'nope'; sweeps: s1, s2"),
        ([path, "--sweep", "nope", "--curves"], "no sweep named 'nope'; sweeps: s1, s2"),
    ]:
        result = runner.invoke(app, ["fit", *args])
        assert result.exit_code == 2, result.output
        assert needle in " ".join(result.stderr.split())
        assert len(result.stderr.strip().splitlines()) == 1


def test_sweep_needs_a_store(epoch_csv):
    result = runner.invoke(app, ["fit", epoch_csv, "--sweep", "s1"])
    assert result.exit_code == 2
    assert "--sweep: sweep 's1': only a scalinglab store (.db) holds sweeps" in " ".join(
        result.stderr.split()
    )
