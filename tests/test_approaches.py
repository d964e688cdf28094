"""Approaches 1 and 2 of Hoffmann et al. (2022) on known laws and on real IsoFLOP sweeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglab.approaches import ApproachError, envelope, isoflop
from scalinglab.laws import get_law
from scalinglab.runs import load_runs

# Hoffmann et al. (2022), eq. 10: the true optimum then has a = β/(α+β) = 0.4516.
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
A_TRUE = 0.28 / (0.34 + 0.28)
LAW = get_law("chinchilla")


def _n_opt(flops: float) -> float:
    """Compute-optimal N of the law: G·(C/6)^a with G = (αA/(βB))^(1/(α+β))."""
    h = HOFFMANN
    g = (h["alpha"] * h["A"] / (h["beta"] * h["B"])) ** (1 / (h["alpha"] + h["beta"]))
    return g * (flops / 6) ** A_TRUE


def _isoflop_frame(noise: float = 0.0, spread: float = 8.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for flops in np.geomspace(1e18, 1e21, 7):
        for params in _n_opt(flops) * np.geomspace(1 / spread, spread, 9):
            tokens = flops / (6 * params)
            loss = float(LAW.predict(HOFFMANN, params=params, tokens=tokens))
            rows.append((params, tokens, flops, loss * np.exp(rng.normal(0, noise))))
    return pd.DataFrame(rows, columns=["params", "tokens", "flops", "loss"])


def test_isoflop_recovers_exponent_of_known_law():
    result = isoflop(_isoflop_frame())
    assert result.a == pytest.approx(A_TRUE, abs=0.005)
    assert result.b == pytest.approx(1 - A_TRUE, abs=0.005)
    n, d = result.allocate(1e20)
    assert n == pytest.approx(_n_opt(1e20), rel=0.05)
    assert 6 * n * d == pytest.approx(1e20, rel=1e-9)
    whole = isoflop(_isoflop_frame(), window=None)
    assert whole.a == pytest.approx(A_TRUE, abs=0.01)


def test_isoflop_bootstrap_ci_covers_truth():
    result = isoflop(_isoflop_frame(noise=0.003), bootstrap=200, seed=1)
    lo, hi = result.params_opt.ci["exponent"]
    assert lo < A_TRUE < hi
    assert result.to_dict()["params_opt"]["ci"]["exponent"] == [lo, hi]


def test_isoflop_refuses_edge_minima_naming_sizes():
    frame = _isoflop_frame()
    small = frame[frame["params"] < frame.groupby("flops")["params"].transform("median")]
    with pytest.raises(ApproachError) as info:
        isoflop(small)
    text = str(info.value)
    assert "the lowest loss is at the largest size" in text
    assert "add sizes above it, e.g." in text and "params" in text
    # Skipping instead: the refused levels are listed, not fitted silently.
    mixed = pd.concat([frame[frame["flops"] > 5e19], small[small["flops"] < 5e19]])
    result = isoflop(mixed, on_edge="skip")
    assert len(result.refused) == int((np.geomspace(1e18, 1e21, 7) < 5e19).sum())
    assert len(result.points) == int((np.geomspace(1e18, 1e21, 7) > 5e19).sum())


def test_isoflop_needs_two_levels_and_one_group():
    frame = _isoflop_frame()
    with pytest.raises(ApproachError, match="at least two compute levels"):
        isoflop(frame[frame["flops"] == frame["flops"].min()])
    frame["group"] = np.where(np.arange(len(frame)) % 2 == 0, "a", "b")
    with pytest.raises(ApproachError, match="choose one with group"):
        isoflop(frame)


def test_porian_configurations(shared_data):
    # Porian et al. (2024): the tuned setup gives a ≈ 0.5; the Kaplan-like setup (long warmup,
    # long cosine, non-embedding count) gives a between 0.83 and 0.87.
    runs = load_runs(shared_data / "porian_isoflop" / "porian_isoflop_points.csv")
    raw = pd.read_csv(shared_data / "porian_isoflop" / "porian_isoflop_points.csv")
    tuned = isoflop(runs, group="rw|tuned|short|const|standard|val", bootstrap=100)
    lo, hi = tuned.params_opt.ci["exponent"]
    assert lo < 0.5 < hi
    kaplan = isoflop(runs, group="rw|base|long|kaplan|kaplan|train")
    assert 0.8 < kaplan.a < 0.9
    # Each level's optimum sits near the one the authors interpolated.
    paper = (
        raw[raw["config"] == "rw|tuned|short|const|standard|val"]
        .groupby("flops")["N_opt_paper"]
        .first()
    )
    ratio = (
        tuned.points.set_index("flops")["params_opt"]
        / paper.reindex(tuned.points["flops"]).to_numpy()
    )
    assert np.all((ratio > 0.8) & (ratio < 1.25))


def test_envelope_of_final_losses_on_chinchilla_runs(shared_data):
    # Hoffmann et al. (2022), Approach 1: a = 0.50.
    runs = load_runs(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv")
    result = envelope(runs, bootstrap=50)
    assert result.a == pytest.approx(0.50, abs=0.03)
    lo, hi = result.params_opt.ci["exponent"]
    assert lo < result.a < hi
    assert np.all(np.diff(result.points["flops"]) > 0)


def test_envelope_of_training_curves():
    # Curves of the known law: each size trained far past its optimum, checkpoints along the way.
    rows = []
    for i, params in enumerate(np.geomspace(1e7, 3e9, 25)):
        for tokens in np.geomspace(params, 400 * params, 60):
            loss = float(LAW.predict(HOFFMANN, params=params, tokens=tokens))
            rows.append((f"run{i}", params, tokens, 6 * params * tokens, loss))
    frame = pd.DataFrame(rows, columns=["run_id", "params", "tokens", "flops", "loss"])
    result = envelope(frame)
    assert result.a == pytest.approx(A_TRUE, abs=0.05)
    with pytest.raises(ApproachError, match="at least two sizes"):
        envelope(frame[frame["run_id"] == "run3"])
