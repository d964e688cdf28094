"""Fits of whole training curves: valid checkpoints by schedule, early cut, thinning, weights."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab import fit, fit_procedure, load_runs
from scalinglab.cli import app
from scalinglab.procedures import ProcedureError
from scalinglab.procedures.curves import CURVE_WEIGHT, curve_points

# A known law (Besiroglu et al. 2024's Chinchilla fit) to draw curves from.
TRUTH = {"E": 1.82, "A": 482.0, "alpha": 0.3478, "B": 2085.0, "beta": 0.3658}


def law(n, d):
    return TRUTH["E"] + TRUTH["A"] * n ** -TRUTH["alpha"] + TRUTH["B"] * d ** -TRUTH["beta"]


def curves_frame(sizes=(2e7, 5e7, 1e8, 2e8, 5e8), points=60, schedule=None, seed=0):
    """Constant-rate curves: every checkpoint is the law at its tokens, 0.3 % noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for d in np.geomspace(1e8, 20 * n * 4, points):
            loss = law(n, d) * np.exp(rng.normal(0, 0.003))
            rows.append({"params": n, "tokens": d, "loss": loss, "run_id": f"n{n:.0e}"})
    fr = pd.DataFrame(rows)
    if schedule is not None:
        fr["schedule"] = schedule
    return fr


def test_decay_keeps_each_runs_end_only():
    runs = load_runs(curves_frame())
    kept, notes = curve_points(runs, schedule="decay")
    assert len(kept) == 5
    ends = runs.frame.groupby("run_id")["tokens"].max()
    assert sorted(kept.frame["tokens"]) == sorted(ends)
    assert np.all(kept.frame[CURVE_WEIGHT] == 1.0)
    assert "only the last point" in notes[0]


@pytest.mark.parametrize("schedule", ["constant", "shared"])
def test_every_checkpoint_after_the_early_cut_thinned_and_weighted(schedule):
    runs = load_runs(curves_frame())
    kept, notes = curve_points(runs, schedule=schedule, early_fraction=0.1, max_points=12)
    for run_id, g in kept.frame.groupby("run_id"):
        last = runs.frame.loc[runs.frame["run_id"] == run_id, "tokens"].max()
        assert len(g) <= 12
        assert g["tokens"].min() >= 0.1 * last * 0.999  # medians of kept points only
        assert g[CURVE_WEIGHT].sum() == pytest.approx(1.0)  # each run weighs the same
    assert any("below 10%" in n for n in notes) and any("merged" in n for n in notes)


def test_schedule_column_per_row_and_errors():
    fr = curves_frame(sizes=(2e7, 5e7), schedule="constant")
    fr.loc[fr["run_id"] == "n2e+07", "schedule"] = "decay"
    kept, _ = curve_points(load_runs(fr), max_points=100)
    counts = kept.frame.groupby("run_id").size()
    assert counts["n2e+07"] == 1 and counts["n5e+07"] > 10
    fr.loc[3, "schedule"] = "cosine"
    with pytest.raises(ProcedureError, match="row 4: schedule 'cosine'") as err:
        curve_points(load_runs(fr))
    assert err.value.field == "schedule"
    with pytest.raises(ProcedureError, match="early_fraction"):
        curve_points(load_runs(fr), schedule="constant", early_fraction=1.0)
    with pytest.raises(ProcedureError, match="schedule must be one of"):
        curve_points(load_runs(fr), schedule="cosine")


@pytest.mark.filterwarnings("ignore:E = 1e-12 sits on its lower bound")
def test_one_long_curve_does_not_outvote_many_runs():
    """Ten one-point runs on the law and one long curve 5 % above it: weighted per run, the fit
    follows the ten runs; weighted per point it would follow the curve."""
    rng = np.random.default_rng(1)
    rows = []
    for i, n in enumerate(np.geomspace(2e7, 1e9, 10)):
        for d in (20 * n, 60 * n):
            rows.append({"params": n, "tokens": d, "loss": law(n, d), "run_id": f"r{i}-{d:.0e}"})
    for d in np.geomspace(1e9, 4e10, 200):
        loss = 1.05 * law(3e8, d) * np.exp(rng.normal(0, 0.001))
        rows.append({"params": 3e8, "tokens": d, "loss": loss, "run_id": "long"})
    runs = load_runs(pd.DataFrame(rows))
    pf = fit_procedure("curves", runs, bootstrap=0, schedule="constant")
    n, d = np.geomspace(2e7, 1e9, 10), 20 * np.geomspace(2e7, 1e9, 10)
    err = np.abs(pf.predict(params=n, tokens=d) / law(n, d) - 1)
    plain = fit("chinchilla", runs)  # every point weighing 1
    err_plain = np.abs(plain.predict(params=n, tokens=d) / law(n, d) - 1)
    assert err.mean() < 0.5 * err_plain.mean()
    assert err.mean() < 0.01


def test_curves_recover_the_law_and_beat_run_ends_alone():
    """Constant-rate curves hold the law at every checkpoint: fitting them extrapolates to a
    4x larger model better than their ends alone do."""
    runs = load_runs(curves_frame(sizes=np.geomspace(2e7, 5e8, 8), points=30))
    whole = fit_procedure("curves", runs, bootstrap=0, schedule="constant")
    ends = fit_procedure("curves", runs, bootstrap=0, schedule="decay")
    n, d = 2e9, 4e10
    e_whole = abs(whole.predict(params=n, tokens=d) / law(n, d) - 1)
    e_ends = abs(ends.predict(params=n, tokens=d) / law(n, d) - 1)
    assert e_whole < 0.01
    assert e_whole < e_ends
    assert "checkpoints" in whole.why


def test_schedule_needs_a_curve_procedure():
    with pytest.raises(ProcedureError, match="curve procedure") as err:
        fit_procedure("plain", load_runs(curves_frame()), bootstrap=0, schedule="constant")
    assert err.value.field == "schedule"


def test_cli_fit_curves(tmp_path):
    path = tmp_path / "curves.csv"
    curves_frame().to_csv(path, index=False)
    runner = CliRunner()
    result = runner.invoke(
        app, ["fit", str(path), "--curves", "--schedule", "constant", "-B", "10", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["procedure"]["procedure"] == "curves"
    assert data["params"]["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.25)
    bad = runner.invoke(app, ["fit", str(path), "--schedule", "constant"])
    assert bad.exit_code == 2 and "--schedule applies to --curves" in bad.output
    bad = runner.invoke(app, ["fit", str(path), "--curves", "--procedure", "auto"])
    assert bad.exit_code == 2 and "--curves fits by the procedure curves" in bad.output
    bad = runner.invoke(app, ["fit", str(path), "--curves", "--schedule", "cosine"])
    assert bad.exit_code == 2 and "--schedule: schedule must be one of" in bad.output
