"""``scalinglab backtest``: tables, JSON with verdicts, the figure, one-line errors (exit 2)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.procedures import PROCEDURES

runner = CliRunner()

# Besiroglu et al. (2024, Table 1) fitted values, used only to generate synthetic runs.
TRUTH = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-c", "from scalinglab.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    """Two recipes, each on six IsoFLOP budgets (2× apart), four runs per budget, 0.4 % noise."""
    rng = np.random.default_rng(0)
    rows = []
    for recipe, scale in (("a", 1.0), ("b", 1.05)):
        for c in 1e18 * 2.0 ** np.arange(6):
            for n in np.geomspace(3e7, 3e8, 4) * (c / 1e18) ** 0.5:
                d = c / (6 * n)
                loss = scale * (
                    TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]
                )
                rows.append(
                    {
                        "N": n,
                        "D": d,
                        "loss": loss * math.exp(0.004 * rng.standard_normal()),
                        "recipe": recipe,
                    }
                )
    path = tmp_path_factory.mktemp("bt") / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_list_procedures():
    result = runner.invoke(app, ["backtest", "--list-procedures"])
    assert result.exit_code == 0, result.output
    for name in PROCEDURES:
        assert name in result.output


def test_json_has_summaries_fits_and_verdicts(runs_csv, tmp_path):
    fig = tmp_path / "bt.png"
    args = ["backtest", runs_csv, "-p", "besiroglu2024", "-p", "frontier", "--group-by", "group"]
    args += ["--n-cuts", "1", "-B", "0", "--figure", str(fig), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["procedure"] for r in data["overall"]] == ["besiroglu2024", "frontier"]
    assert {r["group"] for r in data["by_group"]} == {"a", "b"}
    for row in data["fits"]:
        assert isinstance(row["reliable"], bool) and isinstance(row["reasons"], list)
        assert row["chosen"] == row["procedure"]
    for row in data["predictions"]:
        assert row["factor"] == pytest.approx(2.0)  # one cut at C_max/2: the top budget, ×2
        assert row["lo"] <= row["predicted"] <= row["hi"]
    assert data["figure"] == str(fig)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables(runs_csv):
    args = ["backtest", runs_csv, "-p", "besiroglu2024", "--cut", "8e18", "-B", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Backtest: held-out predictions" in result.output
    assert "extrapolation factor" in result.output
    assert "besiroglu2024" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "magic"], "--procedure: unknown procedure 'magic'; choose one of"),
        (["--group-by", "colour"], "--group-by: group_by 'colour' is not a column"),
        (["--cut", "-3"], "--cut: cuts must be FLOP counts > 0"),
        (["--cut", "1e10"], "no cut leaves runs on both sides"),
        (["--level", "2"], "--level: level must lie in (0, 1)"),
        (["--min-factor", "0.5"], "--min-factor: min_factor must be >= 1"),
        (["--drop-top-loss", "-1"], "--drop-top-loss: "),
        (["--n-cuts", "0"], "--n-cuts must be an integer >= 1"),
        (["--figure", "out.txt"], "--figure must end in .png"),
        (["-c", "params"], "--column takes NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(runs_csv, args, message):
    result = runner.invoke(app, ["backtest", runs_csv, "-B", "0", *args])
    assert result.exit_code == 2, result.output
    text = result.stderr
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert message in " ".join(text.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_file_and_missing_runs_from_the_console(tmp_path):
    result = run_cli("backtest", str(tmp_path / "nope.csv"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nope.csv" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(app, ["backtest"])
    assert result.exit_code == 2 and "RUNS" in result.stderr


@pytest.fixture
def two_sweeps(tmp_path):
    from test_curves import two_sweep_store

    return str(two_sweep_store(tmp_path / "s.db"))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_curves_of_one_sweep_scored_on_run_ends(two_sweeps):
    args = ["backtest", two_sweeps, "-p", "curves", "-p", "plain", "--sweep", "s1"]
    args += ["--schedule", "constant", "-B", "0", "--n-cuts", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Backtest: held-out predictions" in result.output
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["procedure"] for r in data["overall"]] == ["curves", "plain"]
    fits = {r["procedure"]: r for r in data["fits"]}
    assert fits["curves"]["n_train"] > fits["plain"]["n_train"]  # checkpoints below the cut
    assert "schedule constant for every run as given" in fits["curves"]["why"]
    held = {
        name: sorted(
            (p["params"], p["tokens"], p["loss"])
            for p in data["predictions"]
            if p["procedure"] == name
        )
        for name in ("curves", "plain")
    }
    assert held["curves"] == held["plain"] and held["plain"]  # s1's run ends above the cut


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sweep", "nope"], "--sweep: {path}: no sweep named 'nope'; sweeps: s1, s2"),
        (["-p", "curves", "--sweep", "nope"], "no sweep named 'nope'; sweeps: s1, s2"),
        (["--schedule", "constant"], "--schedule: schedule applies to a curve procedure"),
        (["-p", "curves", "--drop-top-loss", "2"], "--drop-top-loss drops final losses"),
        (["-p", "curves", "--schedule", "cosine"], "--schedule: schedule must be one of"),
    ],
)
def test_bad_sweep_or_schedule_is_one_line_with_exit_2(two_sweeps, args, message):
    result = runner.invoke(app, ["backtest", two_sweeps, "-B", "0", "--n-cuts", "1", *args])
    assert result.exit_code == 2, result.output
    assert message.format(path=two_sweeps) in " ".join(result.stderr.split())
    assert len(result.stderr.strip().splitlines()) == 1
