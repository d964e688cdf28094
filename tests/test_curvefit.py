"""The report of a store's training curves (``report --store DB --curves``): the curve fit, a
held-out check that fits the checkpoints at or below its threshold and predicts the run ends
above it (one cut of the curve backtest), and one-line errors for options it cannot use."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.cli.report import report_summary
from scalinglab.procedures import ProcedureError, backtest, rolling
from scalinglab.procedures.inner import INCLUSIVE
from scalinglab.report import build_report
from test_curves import TRUTH, law_curve, spy_fits, store_with_curves
from test_store import make_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Twelve runs (four sizes, three lengths) whose every checkpoint lies on the law, stored
    as cosine (read as constant, every checkpoint is a run of its length)."""
    runs = [make_run(layers, t) for layers in (1, 2, 4, 8) for t in (2**17, 2**19, 2**21)]
    path = tmp_path_factory.mktemp("curves") / "s.db"
    return store_with_curves(path, [(r, law_curve(r, 12)) for r in runs])


def test_report_fits_the_curves_and_checks_on_the_run_ends(store, tmp_path, monkeypatch):
    seen = spy_fits(monkeypatch)
    result = build_report(
        store, tmp_path / "r.html", fit_curves=True, schedule="constant", bootstrap=0
    )
    assert result.fit.params["alpha"] == pytest.approx(TRUTH["alpha"], rel=1e-3)
    assert len(result.content.runs.loss) == 12  # the page draws the run ends
    notes = result.content.notes
    assert any("curves): fitted" in n and "of 12 runs' training curves" in n for n in notes)
    assert any("schedule constant for every run as given" in n for n in notes)
    assert result.fit.diagnostics["curves"]["points"] > 12  # every checkpoint, not the ends
    h = result.holdout
    assert (h["n_train"], h["n_holdout"]) == (11, 1)  # the top 5% of 12 run ends
    assert h["curves"]["points"] > h["n_train"] and h["mean_abs_rel_error"] < 1e-3
    # The check is the curve backtest's fit at one cut: every checkpoint at or below it.
    ((name, checked),) = seen
    assert name == "curves" and checked.frame["flops"].max() <= h["threshold_flops"] * INCLUSIVE
    assert len(checked) > h["n_train"]
    again = backtest(
        store,
        ["curves"],
        cuts=[h["threshold_flops"]],
        bootstrap=0,
        allocation=False,
        schedule="constant",
    )
    assert [r["predicted"] for r in h["runs"]] == list(again.predictions["predicted"])
    assert "points of the training curves with C ≤" in result.content.holdout_summary
    page = (tmp_path / "r.html").read_text()
    assert "procedure curves): fitted" in page and "points of the training curves" in page
    summary = report_summary(result)  # what `report --json` prints
    assert summary["curves"]["notes"][0].startswith("fitted ") and summary["curves"]["points"] > 12
    assert summary["holdout"]["curves"]["procedure"] == "curves"
    json.dumps(summary)


def test_a_decaying_run_ending_above_the_threshold_gives_the_check_nothing(store, tmp_path):
    out = tmp_path / "r.html"
    result = build_report(store, out, fit_curves=True, bootstrap=0, holdout_top=0.25)
    h = result.holdout
    assert (h["n_train"], h["n_holdout"], h["curves"]["points"]) == (9, 3, 9)
    notes = h["curves"]["notes"]
    assert any("3 runs with a decaying schedule contribute nothing" in n for n in notes)
    assert any("12 runs cosine → decay" in n for n in result.content.notes)


def test_api_refuses_what_a_curve_fit_cannot_use(store, tmp_path):
    out = tmp_path / "r.html"
    for kwargs, field in [
        ({"fit_curves": True, "law": "kaplan"}, "law"),
        ({"schedule": "constant"}, "schedule"),
        ({"fit_curves": True, "schedule": "cosine"}, "schedule"),
    ]:
        with pytest.raises(ProcedureError) as err:
            build_report(store, out, bootstrap=0, **kwargs)
        assert err.value.field == field
    assert not out.exists()


runner = CliRunner()


def test_cli_report_store_curves(store, tmp_path):
    out = tmp_path / "r.html"
    args = ["report", "--store", str(store), "--curves", "--bootstrap", "0", "--out", str(out)]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "fitted the training curves (procedure curves):" in text.output
    assert "schedule from the table: 12 runs cosine → decay" in text.output
    assert "held-out check: fitted on 11 points of the training curves (11 run ends)" in (
        text.output.replace("\n", " ")
    )
    assert out.is_file()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--runs", "RUNS"], ["--curves", "needs --store"]),
        (["--store", "STORE", "--fit", "FIT"], ["--curves", "drop --fit"]),
        (["--store", "STORE", "--law", "kaplan"], ["--curves", "drop --law"]),
        (["--store", "STORE", "--drop-top-loss", "2"], ["--drop-top-loss"]),
        (["--store", "STORE", "--schedule", "cosine"], ["--schedule must be one of"]),
    ],
)
def test_cli_curves_bad_combinations_get_one_line(store, tmp_path, extra, words):
    csv = tmp_path / "runs.csv"
    csv.write_text("N,D,loss\n1e6,1e8,3.0\n")
    fit = tmp_path / "fit.json"
    fit.write_text("{}")
    paths = {"RUNS": str(csv), "STORE": str(store), "FIT": str(fit)}
    args = ["report", "--curves", *(paths.get(a, a) for a in extra)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert all(w in result.output for w in words)
    bad = runner.invoke(app, ["report", "--store", str(store), "--schedule", "constant"])
    assert bad.exit_code == 2 and "--schedule applies to --curves" in bad.output
    assert not (tmp_path / "r.html").exists()


def test_rolling_keeps_each_fit(store):
    result = backtest(store, ["curves"], cuts=[1e12], bootstrap=0, allocation=False)
    ((key, pf),) = result.fitted.items()
    assert key == ("all", 1e12, "curves") and isinstance(pf, rolling.ProcedureFit)
    assert np.isfinite(pf.predict(params=1e6, tokens=1e9))
