"""``scalinglab demo``: sweep into a store, fit, held-out check, plan, report; a second demo reuses.

Fast tests drive the whole orchestration with a stand-in trainer whose losses follow Hoffmann
et al.'s (2022, eq. 10) law exactly (E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28), so
the held-out prediction must be exact. The slow test trains real models.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.counting import count_params, flops_per_token
from scalinglab.demo import BUDGET_MULTIPLE, DEMO_SPEC, demo_plan, run_demo
from scalinglab.store import Store
from scalinglab.sweep.budget import plan_sweep
from scalinglab.sweep.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28

SMALL = """
[sweep]
name = "demo"
[data]
corpus = "stdlib"
tokenizer = "byte"
[model]
context_length = 32
[train]
batch_size = 8
schedule = "wsd"
cooldown_fraction = 0.2
[execution]
workers = 2
[design]
kind = "wsd"
params = [12e3, 27e3, 49e3, 110e3]
tokens = 400_000
branch_fractions = [0.1, 0.2, 0.35, 0.55]
"""


def law_loss(params: float, tokens: float) -> float:
    return E + A / params**ALPHA + B / tokens**BETA


def law_train(config, *, checkpoint_dir=None, on_progress=None):
    """A stand-in for the trainer: no torch work, the law's loss at every point."""
    from scalinglab.train.schedule import branch_total_steps

    shape = config.shape
    n = count_params(shape).non_embedding
    total = count_params(shape).total
    per_op = flops_per_token(shape).per_operation
    Path(os.environ["DEMO_TEST_STATE"], f"trained-{shape.d_model}-{os.getpid()}").touch()
    curve = []
    for i in (1, 2, 3, 4):
        t = config.tokens * i // 4
        point = {
            "tokens": t,
            "flops_6nd": 6.0 * total * t,
            "flops_counted": float(per_op * t),
            "train_loss": law_loss(n, t),
            "val_loss": law_loss(n, t),
            "lr": 1e-3,
            "wall_s": 0.5 * i,
        }
        curve.append(point)
        if on_progress is not None:
            on_progress(point)
    step = config.batch_size * shape.context_length
    branches = []
    for b in config.branch_tokens:
        end = branch_total_steps(b // step, config.cooldown_fraction) * step
        branches.append(
            {
                "branch_tokens": b,
                "tokens": end,
                "val_loss": law_loss(n, end),
                "flops_6nd": 6.0 * total * end,
                "flops_counted": float(per_op * end),
            }
        )
    return {
        "config": config.to_dict(),
        "params_total": total,
        "params_non_embedding": n,
        "tokens": config.tokens,
        "flops_6nd": 6.0 * total * config.tokens,
        "flops_counted": float(per_op * config.tokens),
        "val_loss": law_loss(n, config.tokens),
        "curve": curve,
        "branches": branches,
        "tokens_per_s": 1e6,
        "mfu": 0.0,
        "device": "cpu",
        "precision": "fp32",
        "wall_s": 2.0,
        "versions": {"stand-in": "1"},
    }


def test_examples_demo_toml_is_the_demo_spec():
    text = (REPO / "examples" / "demo.toml").read_text(encoding="utf-8")
    assert text == DEMO_SPEC
    assert load_spec(REPO / "examples" / "demo.toml") == parse_spec(DEMO_SPEC, default_name="x")
    assert tomllib.loads(DEMO_SPEC)["data"]["corpus"] == "stdlib"


def test_demo_design_is_a_small_wsd_sweep_of_one_family():
    plan = demo_plan()
    assert plan.spec.design.kind == "wsd"
    assert plan.points >= 20  # enough points for five parameters and a bootstrap
    assert len({r.shape.n_layer for r in plan.runs}) == 1, "one depth: only width varies"
    assert len({r.params for r in plan.runs}) == len(plan.runs) >= 5
    # The largest-compute point is the largest model's own end point: the one held out.
    top = max(plan.runs, key=lambda r: r.flops)
    assert top.params == max(r.params for r in plan.runs)
    assert not plan.coverage.warnings


@pytest.fixture
def state(tmp_path, monkeypatch):
    folder = tmp_path / "trained"
    folder.mkdir()
    monkeypatch.setenv("DEMO_TEST_STATE", str(folder))
    return folder


@pytest.mark.slow  # no training, but two full reports: ~15 s on an idle 2-core machine
def test_demo_sweeps_fits_checks_plans_reports_then_reuses(tmp_path, state):
    plan = plan_sweep(parse_spec(SMALL))
    store, out = tmp_path / "lab.db", tmp_path / "demo.html"
    first = run_demo(store, out, plan=plan, train_fn=law_train, bootstrap=8)
    assert first.trained == len(plan.runs) and first.reused == 0
    assert len(first.runs) == plan.points
    assert out.is_file() and store.is_file()
    # the held-out point is the largest-compute one, and exact data are predicted exactly
    held = first.heldout
    assert held["flops"] == max(first.runs.frame["flops"])
    assert abs(held["rel_error"]) < 1e-3
    assert first.budget_flops == pytest.approx(BUDGET_MULTIPLE * plan.total_flops)
    assert first.allocation is not None and first.allocation["budget (FLOP)"] == first.budget_flops
    page = out.read_text(encoding="utf-8")
    assert 'id="training_curves"' in page and 'id="heldout"' in page
    assert "scalinglab demo --store" in page

    trained_before = len(list(state.iterdir()))
    second = run_demo(store, out, plan=plan, train_fn=law_train, bootstrap=8)
    assert second.trained == 0 and second.reused == len(plan.runs)
    assert len(list(state.iterdir())) == trained_before, "nothing was trained again"
    assert second.heldout["rel_error"] == pytest.approx(held["rel_error"])
    with Store(store, readonly=True) as db:
        assert len(db.runs("demo", status="finished")) == plan.points


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "word"),
    [(["--workers", "0"], "--workers"), (["--bootstrap", "-1"], "--bootstrap")],
)
def test_demo_cli_bad_options_get_one_line(args, word, tmp_path):
    result = runner.invoke(app, ["demo", "--store", str(tmp_path / "x.db"), *args])
    assert result.exit_code == 2
    assert word in result.output and len(result.output.strip().splitlines()) == 1


def test_demo_cli_refuses_a_folder_as_store(tmp_path):
    result = runner.invoke(app, ["demo", "--store", str(tmp_path)])
    assert result.exit_code == 2 and "--store" in result.output


@pytest.mark.slow
def test_demo_with_real_training_reports_and_reuses(tmp_path, monkeypatch):
    """Real models on the stdlib corpus (a small version of the demo's sweep), via the CLI."""
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(SMALL.replace("tokens = 400_000", "tokens = 120_000"))
    import scalinglab.demo as demo_module

    monkeypatch.setattr(demo_module, "demo_plan", lambda workers=None: plan_sweep(spec))
    result = runner.invoke(app, ["demo", "--bootstrap", "20", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["trained"] == len(spec.design.params) and summary["reused"] == 0
    assert Path("scalinglab.db").is_file() and Path("scalinglab-report.html").is_file()
    held = summary["heldout"]
    assert held["loss"] > 0 and abs(held["rel_error"]) < 0.2
    again = json.loads(runner.invoke(app, ["demo", "--bootstrap", "20", "--json"]).stdout)
    assert again["trained"] == 0 and again["reused"] == summary["trained"]
