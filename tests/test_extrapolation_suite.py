"""The extrapolation suite (benchmarks/extrapolation_suite.py): its summaries, calibration and
leave-one-set-out choice on made-up predictions, its synthetic families, and (slow) its targets
for the default procedure on every set."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import extrapolation_suite as suite

NO_ALLOC = pd.DataFrame(columns=["set", "group", "procedure", "flops", "n_opt", "planned"])


def made_up(spread: dict[str, float], bias: dict[str, float] | None = None, n=400, seed=0):
    """Predictions whose log errors are N(bias, spread) and whose stated sd is 1 % everywhere."""
    rng = np.random.default_rng(seed)
    frames = []
    for s, sd in spread.items():
        for proc, shift in (("a", 0.0), ("b", 0.02)):
            err = rng.normal((bias or {}).get(s, 0.0) + shift, sd, n)
            frames.append(
                pd.DataFrame(
                    {
                        "set": s,
                        "group": "g",
                        "procedure": proc,
                        "loss": 2.0,
                        "predicted": 2.0 * np.exp(err),
                        "rel_error": np.expm1(err),
                        "sd_log": 0.01,
                        "factor": 10.0,
                        "reliable": True,
                        "seconds": 0.1,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def test_calibration_scale_gives_ninety_percent_pooled():
    pred = made_up({"x": 0.01, "y": 0.02})
    a = pred[pred["procedure"] == "a"]
    scale = suite.calibrate(a)
    s = suite.summarise(a, scale=scale)
    # each set weighs the same: the pooled coverage is the mean of the two sets'
    assert s["coverage"].mean() == pytest.approx(0.9, abs=0.01)
    assert s.set_index("set").loc["x", "coverage"] > s.set_index("set").loc["y", "coverage"]
    # sd 1 % stated, errors 1 % and 2 %: the scale lies between the two sets' own
    assert 1.0 < scale < 2.0


def test_leave_one_set_out_remakes_every_choice_without_the_set():
    # Procedure b is 2 % off everywhere, so a is chosen with or without any set; the scale made
    # without the wide set covers less of it than the scale made on all sets.
    pred = made_up({"x": 0.01, "y": 0.01, "wide": 0.04})
    loso = suite.leave_one_set_out(pred, NO_ALLOC, ["a", "b"], "a")
    assert set(loso["default"]) == {"a"}
    wide = loso[loso["set"] == "wide"].set_index("chosen on")
    assert wide.loc["without it", "scale"] < wide.loc["all sets", "scale"]
    assert wide.loc["without it", "coverage"] < wide.loc["all sets", "coverage"]


def test_summaries_report_sign_bias_and_width():
    pred = made_up({"x": 0.005}, bias={"x": 0.03})
    s = suite.summarise(pred[pred["procedure"] == "a"]).iloc[0]
    assert s["bias"] == pytest.approx(0.03, abs=0.002)
    assert s["mean_abs_error"] == pytest.approx(0.03, abs=0.002)
    assert s["width"] == pytest.approx(np.expm1(2 * suite.Z90 * 0.01))
    f = suite.by_factor(pred)
    assert set(f["factor_bin"]) == {"[4.0, 16.0)"}


@pytest.mark.parametrize("kind", suite.SYNTHETIC)
def test_synthetic_families_are_seeded_and_split(kind):
    a, b = suite.synthetic_cases(kind)[0], suite.synthetic_cases(kind)[0]
    pd.testing.assert_frame_equal(a.train, b.train)
    ((_, test),) = a.tests
    assert a.train["flops"].max() * 7 < test["flops"].min()
    assert len(a.train) >= 40 and len(test) >= 20


def test_porian_tuning_diagnosis_pairs_tuned_with_matching_base_configurations(shared_data):
    from suite_sets import porian_tuning_diagnosis

    r = porian_tuning_diagnosis()
    # Porian's four tuned configurations each have base ones of the same data, warmup, count
    # and loss; every error is a percentage of a real fit, not a placeholder.
    assert r["measured"].count(" vs base ") == 4
    assert "long warmup" in r["measured"] and "nan" not in r["measured"]
    assert isinstance(r["supported"], bool)


def test_default_choice_must_hold_on_every_set():
    # b is best on x by a hair and far worse on y: the choice is a (least bad on its worst set).
    pred = made_up({"x": 0.01, "y": 0.01})
    ax = (pred["set"] == "x") & (pred["procedure"] == "a")
    bx = (pred["set"] == "x") & (pred["procedure"] == "b")
    pred.loc[bx, "rel_error"] = 0.9 * pred.loc[ax, "rel_error"].to_numpy()
    assert suite.choose_default(pred, NO_ALLOC, ["a", "b"], ["x", "y"])[0] == "a"
    # ... and when nothing wins every set the published recipe stays
    by = (pred["set"] == "y") & (pred["procedure"] == "b")
    pred.loc[by, "rel_error"] = 0.1 * pred.loc[by, "rel_error"].to_numpy()
    name, why = suite.choose_default(pred, NO_ALLOC, ["a", "b"], ["x", "y"])
    assert name == "b"
    pred.loc[bx, "rel_error"] = 10 * pred.loc[bx, "rel_error"].to_numpy()
    name, why = suite.choose_default(pred, NO_ALLOC, ["a", "b"], ["x", "y"])
    assert name == suite.FALLBACK and "no candidate wins every set" in why


def test_allocation_decides_too():
    pred = made_up({"x": 0.01})
    alloc = pd.DataFrame(
        {
            "set": "x",
            "group": "g",
            "procedure": ["a", "b"],
            "flops": 1e21,
            "n_opt": 1e10,
            "planned": [1e9, 1.1e10],  # a plans 10x too small
        }
    )
    table = suite.allocation(alloc).set_index("procedure")
    assert table.loc["a", "decades"] == pytest.approx(1.0)
    assert table.loc["b", "within25"] == 1.0
    # a predicts the loss best but plans badly: it does not win the set, and neither does b
    assert suite.choose_default(pred, alloc, ["a", "b"], ["x"])[0] == suite.FALLBACK


# What the default (the published recipe, `plain`, splitting budgets with its planner) reaches on
# the suite, measured by `benchmarks/extrapolation.py --suite` (README, "The extrapolation
# suite"). The others are missed, and the README says by how much.
MET_BY_DEFAULT = {
    "coverage >= 80% on every set",
    "Porian N_opt: mean <= 0.08 decades",
    "Porian N_opt: >= 85% within 25%",
}


@pytest.mark.slow
def test_suite_targets_for_the_default(shared_data):
    # bootstrap 30, as the calibration was made with (the parameter term depends on it)
    pred, alloc = suite.run_suite([suite.DEFAULT], bootstrap=30)
    checks = suite.targets(pred, alloc, suite.DEFAULT)
    met = {label for label, ok, _ in checks if ok}
    assert MET_BY_DEFAULT <= met, checks
    summary = suite.summarise(pred).set_index("set")
    assert set(summary.index) == set(suite.SETS)
    # the published recipe's known behaviour, within a margin: Chinchilla 1.05 %, GPT-3's 175B
    # over-predicted from the models <= 1.3B by about 2 % (issue 17), Porian's far-off-optimal
    # runs mispredicted by ~10 % on average, the demo's plan runs (10x) by ~15 %
    assert summary.loc["chinchilla", "mean_abs_error"] == pytest.approx(0.0105, abs=0.002)
    g = suite.summarise(pred, ("set", "group")).set_index("group")
    assert 0.01 < g.loc["175b from <=1.3B", "bias"] < 0.035
    assert summary.loc["porian", "mean_abs_error"] > 0.05
    assert summary.loc["demo", "mean_abs_error"] > 0.04
    # its planner (what `scalinglab plan` uses: of plain and its planners, the fit closest to the
    # IsoFLOP minima measured in the fitted runs) plans every budget of every set holding optima,
    # Porian's within the targets, Chinchilla's 70B from C <= 1e21 ~0.14 decades off; where the
    # law bends above the fitted runs (syn-scale-bias) the measured minima mislead it
    al = suite.allocation(alloc).set_index("set")
    syn = [k for k in al.index if k.startswith("syn-")]
    assert len(syn) == len(suite.SYNTHETIC) and (al["refused"] == 0).all()
    assert (al.loc[syn, "decades"] < 0.15).all()
    assert al.loc["chinchilla", "decades"] == pytest.approx(0.135, abs=0.03)
    assert al.loc["porian", "decades"] <= 0.08 and al.loc["porian", "within25"] >= 0.85
    loso = suite.leave_one_set_out(pred, alloc, [suite.DEFAULT], suite.DEFAULT)
    assert len(loso) == 2 * len(suite.SETS)
    assert loso["coverage"].between(0.5, 1.0).all()
