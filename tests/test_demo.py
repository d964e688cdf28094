"""``scalinglab demo``: sweep, fit, check, plan, train the plan, report; a second demo reuses.

The orchestration tests use a stand-in trainer whose losses follow Hoffmann et al.'s (2022,
eq. 10) law exactly (E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28), so the law is
identified, the held-out level is predicted exactly and so are the plan and the alternative.
The slow test at the end trains real models through the CLI.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.counting import count_params, flops_per_token
from scalinglab.demo import (
    ALTERNATIVE_TOKENS_PER_PARAM,
    BUDGET_MULTIPLE,
    DEMO_SPEC,
    PLAN_LEVEL,
    choose_law,
    demo_plan,
    heldout_threshold,
    identification_problems,
    plan_check,
    predictive_fit,
    run_demo,
)
from scalinglab.fitting import Fit
from scalinglab.procedures import get_procedure
from scalinglab.runs import load_runs
from scalinglab.store import Store
from scalinglab.sweep.budget import plan_sweep
from scalinglab.sweep.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28

# Three IsoFLOP levels of 3 sizes: the smallest design whose top level leaves six points for a
# five-parameter law below it.
SMALL = """
[sweep]
name = "demo"
[data]
corpus = "stdlib"
tokenizer = "byte"
[model]
context_length = 32
aspect_min = 16
[train]
batch_size = 8
schedule = "wsd"
eval_tokens = 8192
[execution]
workers = 2
[design]
kind = "isoflop"
flops_min = 3e9
flops_max = 3e10
levels = 3
sizes_per_level = 3
width_decades = 1.0
tokens_per_param = 70
"""


def law_loss(params: float, tokens: float) -> float:
    return E + A / params**ALPHA + B / tokens**BETA


def law_train(config, *, checkpoint_dir=None, on_progress=None):
    """A stand-in for the trainer: no torch work, the law's loss at every point."""
    shape = config.shape
    n = count_params(shape).non_embedding
    total = count_params(shape).total
    per_op = flops_per_token(shape).per_operation
    Path(os.environ["DEMO_TEST_STATE"], f"trained-{shape.d_model}-{config.tokens}").touch()
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
    return {
        "config": config.to_dict(),
        "params_total": total,
        "params_non_embedding": n,
        "tokens": config.tokens,
        "flops_6nd": 6.0 * total * config.tokens,
        "flops_counted": float(per_op * config.tokens),
        "val_loss": law_loss(n, config.tokens),
        "curve": curve,
        "branches": [],
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


def test_demo_design_follows_its_rule():
    """Levels 10^0.25 apart over a decade, each spanning decades of D/N, depth varying, every run
    at least 200 steps long, the learning rate falling as 1/width."""
    plan = demo_plan()
    spec = plan.spec
    assert spec.design.kind == "isoflop"
    levels = sorted({r.compute_level for r in plan.runs})
    assert len(levels) == spec.design.levels == 5
    assert np.allclose(np.diff(np.log10(levels)), 0.25)
    assert plan.coverage.compute_decades >= 1.0
    assert plan.coverage.ratio_decades >= 2.5
    assert all(n >= 3 for n in plan.coverage.sizes_per_level.values())
    assert len({r.shape.n_layer for r in plan.runs}) > 1, "depth varies as well as width"
    step = spec.train.batch_size * spec.model.context_length
    for run in plan.runs:
        assert run.tokens >= spec.design.min_steps * step
        lr = run.config_dict["lr"]
        assert lr == pytest.approx(spec.train.lr * spec.train.lr_ref_width / run.shape.d_model)
    # The held-out level is the top one, and everything below it is fitted.
    threshold = heldout_threshold(plan, None)
    assert levels[-2] < threshold < levels[-1]
    top = [r for r in plan.runs if r.flops > threshold]
    assert {r.compute_level for r in top} == {levels[-1]}


def test_heldout_threshold_without_levels_holds_out_the_largest_point():
    plan = plan_sweep(
        parse_spec(
            SMALL.replace(
                'kind = "isoflop"\nflops_min = 3e9\nflops_max = 3e10\nlevels = 3\n'
                "sizes_per_level = 3\nwidth_decades = 1.0\ntokens_per_param = 70",
                'kind = "grid"\nparams = [12e3, 27e3]\ntokens = [200_000, 400_000]',
            )
        )
    )
    frame = pd.DataFrame({"params": [1e4] * 3, "tokens": [1e5, 2e5, 8e5], "loss": 2.0})
    assert heldout_threshold(plan, load_runs(frame)) == pytest.approx(6e4 * 4e5)


def _fit_with(ci: dict, warnings: tuple[str, ...] = ()) -> Fit:
    params = {"E": 1.0, "A": 100.0, "B": 100.0, "alpha": 0.3, "beta": 0.3}
    return Fit.from_params("chinchilla", params, ci=ci, warnings=warnings)


@pytest.mark.parametrize(
    ("ci", "warnings", "words"),
    [
        ({"E": (0.8, 1.2), "alpha": (0.25, 0.4), "beta": (0.2, 0.39)}, (), []),
        ({"E": (1e-12, 1.2), "alpha": (0.25, 0.4), "beta": (0.2, 0.39)}, (), ["E's"]),
        ({"E": (0.8, 1.2), "alpha": (0.25, 0.45), "beta": (0.2, 0.39)}, (), ["alpha's"]),
        ({"E": (0.8, 1.2), "alpha": (0.25, 0.4), "beta": (0.1, 0.9)}, (), ["beta's"]),
        (
            {"E": (0.8, 1.2), "alpha": (0.25, 0.4), "beta": (0.2, 0.39)},
            ("E = 1e-12 sits on its lower bound; the data do not determine it",),
            ["sits on"],
        ),
    ],
)
def test_identification_problems_name_what_is_not_pinned(ci, warnings, words):
    problems = identification_problems(_fit_with(ci, warnings), min_loss=2.0)
    assert len(problems) == len(words)
    for problem, word in zip(problems, words, strict=True):
        assert word in problem


def test_identification_needs_a_bootstrap():
    (problem,) = identification_problems(_fit_with({}), min_loss=2.0)
    assert "bootstrap" in problem


def _bootstrapped(law: str, params: dict, spread: float, ci: dict | None = None) -> Fit:
    """A fit at ``params`` whose 200 bootstrap draws scatter each parameter by ``spread`` (log)."""
    rng = np.random.default_rng(0)
    names = Fit.from_params(law, params).law_object.param_names
    draws = (
        np.array([params[n] for n in names])
        * np.exp(spread * rng.normal(size=(200, 5)))[:, : len(names)]
    )
    return Fit.from_params(law, params, bootstrap_params=draws, ci=ci or {})


def test_identification_refuses_a_law_that_does_not_know_its_allocation():
    params = {"E": 1.0, "A": 100.0, "B": 100.0, "alpha": 0.3, "beta": 0.3}
    # Narrow intervals of α and β on their own (the width test passes) ...
    ci = {"E": (0.8, 1.2), "alpha": (0.25, 0.35), "beta": (0.25, 0.35)}
    assert identification_problems(_bootstrapped("chinchilla", params, 0.01, ci), 2.0) == []
    # ... but draws of α and β that move apart: a = β/(α+β) spans more than Kaplan-vs-Hoffmann.
    problems = identification_problems(_bootstrapped("chinchilla", params, 0.6, ci), 2.0)
    assert any("interval of a" in p and "do not tell N from D" in p for p in problems)


# Kaplan et al.'s form at this scale: the values the demo's pilot sweep gave it (N_c = 1.7e5,
# D_c = 3.3e7, α_N = 0.17, α_D = 0.18); it has no floor, so Chinchilla's E runs to its bound.
KAPLAN = {"N_c": 1.7e5, "D_c": 3.3e7, "alpha_N": 0.17, "alpha_D": 0.18}


def _grid_runs(law: str, params: dict, noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    truth = Fit.from_params(law, params)
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(3e3, 3e5, 6), np.geomspace(1e5, 1e7, 6)))
    loss = truth.predict(params=n, tokens=d) * (1 + noise * rng.normal(size=n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


@pytest.mark.slow  # three bootstrapped fits: ~15 s on an idle 2-core machine
def test_choose_law_keeps_an_identified_law_and_falls_back_to_kaplans_form():
    chinchilla = {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA}
    clear = choose_law(load_runs(_grid_runs("chinchilla", chinchilla)), bootstrap=20)
    assert clear.identified and not clear.problems and clear.fit.law == "chinchilla"
    assert clear.fit.ci["E"][0] > 1.0 and clear.exponents == ("alpha", "beta")
    # Data from a law without a floor: E runs into its bound; Kaplan's form is identified.
    floorless = choose_law(load_runs(_grid_runs("kaplan-nd", KAPLAN, 0.005)), bootstrap=20)
    assert floorless.identified and floorless.fit.law == "kaplan-nd"
    assert floorless.problems  # why the full form was not used
    assert "does not identify the full law" in floorless.note
    assert floorless.exponents == ("alpha_N", "alpha_D")
    lo, hi = floorless.fit.ci["alpha_N"]
    assert lo < KAPLAN["alpha_N"] < hi


@pytest.fixture
def state(tmp_path, monkeypatch):
    folder = tmp_path / "trained"
    folder.mkdir()
    monkeypatch.setenv("DEMO_TEST_STATE", str(folder))
    return folder


@pytest.mark.slow  # no training, but four bootstrapped fits and two reports: ~30 s idle
def test_demo_sweeps_fits_checks_plans_trains_the_plan_reports_then_reuses(tmp_path, state):
    plan = plan_sweep(parse_spec(SMALL))
    store, out = tmp_path / "lab.db", tmp_path / "demo.html"
    planned = []
    first = run_demo(
        store, out, plan=plan, train_fn=law_train, bootstrap=20, on_plan=planned.append
    )
    assert first.trained == len(plan.runs) and first.reused == 0
    assert len(first.runs) == plan.points and out.is_file() and store.is_file()
    # Exact law data: the full form is identified and every check is exact.
    assert first.law.identified, first.law.problems
    held = first.heldout
    top = max(r.compute_level for r in plan.runs)
    assert {round(r["flops"] / top, 1) for r in held["runs"]} == {1.0}
    assert held["max_abs_rel_error"] < 1e-3
    # The plan: 10x the largest run, predicted before training, then trained and measured.
    assert first.budget_flops == pytest.approx(BUDGET_MULTIPLE * first.runs.frame["flops"].max())
    (check,) = planned
    assert [p.measured for p in check.predictions] == [None, None]
    plan_run, alternative = first.checks
    for run in first.checks:
        assert run.flops == pytest.approx(first.budget_flops, rel=0.03)
        assert run.measured == pytest.approx(law_loss(run.params, run.tokens), rel=1e-9)
        assert abs(run.rel_error) < 1e-9  # exact data: a zero-width interval, the same loss
    assert alternative.tokens / alternative.params == pytest.approx(
        ALTERNATIVE_TOKENS_PER_PARAM, rel=0.15
    )
    assert plan_run.measured < alternative.measured, "the optimum beats 20 tokens/param"
    page = out.read_text(encoding="utf-8")
    assert page.index('id="answer"') < page.index('id="figures"')
    assert 'id="plan_check"' in page and 'id="trained-table"' in page
    assert "scalinglab demo --store" in page

    trained_before = len(list(state.iterdir()))
    second = run_demo(store, out, plan=plan, train_fn=law_train, bootstrap=20)
    assert second.trained == 0 and second.reused == len(plan.runs)
    assert len(list(state.iterdir())) == trained_before, "nothing was trained again"
    assert second.checks == first.checks
    with Store(store, readonly=True) as db:
        assert len(db.runs("demo", status="finished")) == plan.points
        assert len(db.runs("demo-plan", status="finished")) == 2


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


def _number(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@pytest.mark.slow
def test_reduced_demo_with_real_training_reports_every_number(tmp_path, monkeypatch):
    """Real models on the stdlib corpus (a reduced demo sweep), through the CLI: the law with
    intervals, the held-out errors, the plan with its interval, the plan and the alternative
    trained and measured, all printed, in the JSON summary and in the report; then reused."""
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(SMALL)
    # The CLI designs the sweep with scalinglab.demo.demo_plan: a reduced one here.
    monkeypatch.setattr("scalinglab.demo.demo_plan", lambda workers=None: plan_sweep(spec))
    text = runner.invoke(app, ["demo", "--bootstrap", "20"])
    assert text.exit_code == 0, text.output
    for words in ("law (", "held-out check", "plan for", "plan, trained", "alternative"):
        assert words in text.output
    result = runner.invoke(app, ["demo", "--bootstrap", "20", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["trained"] == 0 and summary["reused"] == len(plan_sweep(spec).runs)
    names = ("alpha", "beta") + (("E",) if summary["identified"] else ())
    for name in names:
        lo, hi = summary["ci"][name]
        assert _number(lo) and _number(hi) and lo <= summary["params"][name] <= hi
    held = summary["heldout"]
    assert held["n_holdout"] >= 1 and _number(held["mean_abs_rel_error"])
    assert summary["law_note"]
    plan_run, alternative = summary["checks"]
    for run in (plan_run, alternative):
        assert _number(run["predicted"]) and _number(run["measured"]) and run["measured"] > 0
        lo, hi = run["interval"]
        assert lo <= run["predicted"] <= hi and run["level"] == 0.9
        assert isinstance(run["inside"], bool) and _number(run["rel_error"])
    assert plan_run["label"] == "plan"
    page = Path(summary["report"]).read_text(encoding="utf-8")
    assert 'id="answer"' in page and 'id="plan_check"' in page
    assert f"{plan_run['measured']:.4f}" in page and f"{plan_run['predicted']:.4f}" in page


@pytest.mark.parametrize(("law", "recipe"), [("kaplan-nd", None), ("chinchilla", "plain")])
def test_predictive_intervals_add_scatter_and_extrapolation_to_the_bootstrap(law, recipe):
    truth = KAPLAN if law == "kaplan-nd" else {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA}
    runs = load_runs(_grid_runs(law, truth, noise=0.01))
    fit = _bootstrapped(law, truth, 0.002)
    uncertainty = predictive_fit(fit, runs)
    # The recipe's calibration from the registry; 1 where no registered recipe fits this way.
    scale = get_procedure(recipe).interval_scale if recipe else 1.0
    assert uncertainty.interval_scale == scale and uncertainty.fits == (fit,)
    # 1% multiplicative noise: a robust log scatter near 0.01.
    assert 0.005 < uncertainty.scatter < 0.02
    assert math.isfinite(uncertainty.growth) and uncertainty.inner_cuts_flops
    target = {"params": 3e6, "tokens": 1e8}  # far beyond the grid's largest run
    boot_lo, boot_hi = fit.prediction_interval(PLAN_LEVEL, **target)
    lo, hi = uncertainty.interval(PLAN_LEVEL, **target)
    assert lo < boot_lo < fit.predict(**target) < boot_hi < hi
    # At least the scatter's width: log(hi/lo) ≥ 2 · z(0.95) · scale · s.
    assert math.log(hi / lo) >= 2 * 1.6448 * scale * uncertainty.scatter


def test_plan_check_takes_its_intervals_from_the_predictive_rule():
    runs = load_runs(_grid_runs("kaplan-nd", KAPLAN, noise=0.01))
    fit = _bootstrapped("kaplan-nd", KAPLAN, 0.002)
    uncertainty = predictive_fit(fit, runs)
    spec = load_spec(REPO / "examples" / "demo.toml")
    check = plan_check(fit, spec, 2e12, uncertainty=uncertainty)
    for run in check.predictions:
        lo, hi = uncertainty.interval(PLAN_LEVEL, params=run.params, tokens=run.tokens)
        assert run.interval == (lo, hi) and run.level == PLAN_LEVEL
        assert lo < run.predicted < hi
    assert all(r.interval is None for r in plan_check(fit, spec, 2e12).predictions)
