"""``scalinglab import``: the OLMo exports end to end, commands that read a store working
unchanged on imported runs, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-c", "from scalinglab.cli import main; main()", *args],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def olmo_files(shared_data) -> list[str]:
    return [str(p) for p in sorted((shared_data / "wandb_exports").glob("*.csv"))]


def test_olmo_import_then_export(olmo_files, tmp_path):
    store = tmp_path / "olmo.db"
    meta = str(REPO / "examples" / "olmo_import.toml")
    result = runner.invoke(app, ["import", *olmo_files, "--meta", meta, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "stitched: OLMo-7B: 36 segments (OLMo-7B-run-002 … OLMo-7B-run-038)" in result.output
    assert "wrote 3 runs" in result.output
    again = runner.invoke(
        app, ["import", *olmo_files, "--meta", meta, "--store", str(store), "--json"]
    )
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["imported"] == 0 and {r["status"] for r in data["runs"]} == {"unchanged"}
    out = tmp_path / "curves.csv"
    exported = runner.invoke(
        app, ["sweep", "export", "--store", str(store), "--what", "curves", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    curves = pd.read_csv(out)
    assert curves["run_id"].nunique() == 3 and len(curves) == 529 + 208 + 735
    # fit reads the store as it is: three runs are too few for five parameters, one line.
    fitted = run_cli("fit", str(store))
    assert fitted.returncode == 2 and "needs more than 5 runs, got 3" in fitted.stderr
    assert len(fitted.stderr.strip().splitlines()) == 1, fitted.stderr


def test_fit_reads_an_imported_store(tmp_path):
    """Twelve runs of a known law L = E + A/N^a + B/D^b, logged as one long table."""
    e, a, b, alpha, beta = 1.8, 400.0, 1200.0, 0.34, 0.28
    rows, meta = [], ['param_basis = "total"', 'flops_method = "6nd"']
    for n in (2e7, 5e7, 1e8, 3e8):
        for d_final in (1e9, 3e9, 1e10):
            name = f"n{n:.0e}-d{d_final:.0e}"
            meta.append(f'[runs."{name}"]\nparams = {int(n)}')
            for d in np.geomspace(1e8, d_final, 8):
                loss = e + a / n**alpha + b / d**beta
                rows.append({"run": name, "tokens": int(d), "val/loss": loss})
    table = tmp_path / "runs.parquet"
    pd.DataFrame(rows).to_parquet(table)
    meta_path = tmp_path / "meta.toml"
    meta_path.write_text("\n".join(meta) + "\n")
    store = tmp_path / "s.db"
    result = runner.invoke(
        app, ["import", str(table), "--meta", str(meta_path), "--store", str(store)]
    )
    assert result.exit_code == 0, result.output
    fit = runner.invoke(app, ["fit", str(store), "--json"])
    assert fit.exit_code == 0, fit.output
    params = json.loads(fit.output)["params"]
    assert params["alpha"] == pytest.approx(alpha, rel=0.05)
    assert params["beta"] == pytest.approx(beta, rel=0.05)
    assert params["E"] == pytest.approx(e, rel=0.05)


def test_errors_are_one_line_and_write_nothing(tmp_path):
    source = tmp_path / "history.csv"
    pd.DataFrame({"_step": [1, 2], "eval/loss": [3.0, 2.9], "eval/acc": [0.1, 0.2]}).to_csv(
        source, index=False
    )
    store = tmp_path / "never.db"
    common = ["--store", str(store), "--param-basis", "total", "--flops-method", "6nd"]
    cases = [
        ([str(source), *common], "missing metadata"),
        (
            [str(source), *common, "--params", "1000", "--tokens-per-step", "10", "-m", "eval/acc"],
            "not a loss",
        ),
        (
            [str(source), *common, "--params", "1000", "--tokens-per-step", "10", "-m", "nope"],
            "no such metric",
        ),
        ([str(tmp_path / "missing.csv"), *common], "no such file"),
    ]
    for args, message in cases:
        done = run_cli("import", *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not store.exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = runner.invoke(app, ["import", str(empty), *common])
    assert result.exit_code == 2 and not store.exists()


@pytest.mark.slow
def test_report_draws_imported_curves(olmo_files, tmp_path):
    """Three runs are too few for any law: the report shows the runs and their curves."""
    store = tmp_path / "olmo.db"
    meta = str(REPO / "examples" / "olmo_import.toml")
    assert runner.invoke(app, ["import", *olmo_files, "--meta", meta, "--store", str(store)])
    figures = tmp_path / "figures"
    result = runner.invoke(
        app,
        [
            "report",
            "--store",
            str(store),
            "--out",
            str(tmp_path / "r.html"),
            "--figures",
            str(figures),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (figures / "training_curves.svg").is_file()
    assert "no fit" in (tmp_path / "r.html").read_text()
    # What the figure drew: one curve per job, the 7B's 36 segments as one of 529 points.
    from scalinglab.report.content import build_content
    from scalinglab.runs import load_runs
    from scalinglab.store import Store

    with Store(store, readonly=True) as db:
        curves = db.curves()
    content = build_content(load_runs(store), None, curves=curves)
    assert sorted(len(c.tokens) for c in content.curves) == [208, 529, 735]


def test_a_binary_meta_file_is_one_line(tmp_path):
    # Found by tests/test_fuzz.py: a --meta that is not text raised UnicodeDecodeError.
    from _main import one_line_error, run_main

    meta = tmp_path / "meta.toml"
    meta.write_bytes(bytes(range(256)))
    logs = tmp_path / "logs.csv"
    logs.write_text("run,step,loss\na,1,3.0\n")
    line = one_line_error(run_main("import", logs, "--meta", meta, "--store", tmp_path / "s.db"))
    assert "meta.toml: not a TOML file" in line
