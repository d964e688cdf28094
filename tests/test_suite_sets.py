"""The extrapolation suite's sets (benchmarks/suite_sets.py): the demo set, read from the demo
store's export in benchmarks/data, loads without training and splits as its docstring says."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import suite_sets

from scalinglab import load_runs
from scalinglab.procedures.curves import curve_points


def test_demo_set_fits_the_levels_below_the_top_and_predicts_the_top_and_the_plan():
    assert "demo" in suite_sets.SETS
    exported = pd.read_csv(suite_sets.DEMO_POINTS)
    sweep = exported[exported["group"] == "demo"]
    levels = np.sort(sweep["compute_level"].unique())
    held, plan = suite_sets.SETS["demo"]()
    assert {held.set, plan.set} == {"demo"}
    # 1: every level but the top one, predicting the top level's runs
    ((name, top),) = held.tests
    assert name == "top level"
    assert len(held.train) + len(top) == len(sweep)
    assert held.train["run_id"].isin(sweep.loc[sweep["compute_level"] < levels[-1], "run_id"]).all()
    assert top["run_id"].isin(sweep.loc[sweep["compute_level"] == levels[-1], "run_id"]).all()
    assert held.train["flops"].max() < top["flops"].min()
    # 2: every level, predicting the planned run and its alternative at 10x the largest run
    ((name, planned),) = plan.tests
    assert name == "demo-plan (10x)" and len(plan.train) == len(sweep)
    ratio = planned["flops"].to_numpy() / plan.train["flops"].max()
    assert np.allclose(ratio, 10.0, rtol=0.05)
    # the frames are runs tables, and the stored WSD schedule reads as decay for `curves`
    kept, notes = curve_points(load_runs(held.train))
    assert len(kept) == len(held.train) and "wsd → decay" in notes[-1]


def test_demo_set_without_the_plan_is_the_held_out_check_alone(tmp_path):
    exported = pd.read_csv(suite_sets.DEMO_POINTS)
    path = tmp_path / "demo_points.csv"
    exported[exported["group"] == "demo"].to_csv(path, index=False)
    (case,) = suite_sets.demo_cases(path)
    assert [name for name, _ in case.tests] == ["top level"]
