"""Figures: drawn from plain values, with units and log axes, leaving matplotlib state alone.

The reference runs are the 240 Chinchilla runs Besiroglu et al. (2024) fit (Epoch AI's
digitisation of Hoffmann et al. 2022, Figure 4; ../shared/data/chinchilla_epoch), the reference
law their published refit E = 1.8172, A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658
(Besiroglu et al. 2024, Table 1).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest

from scalinglab import Fit, fit
from scalinglab.report.content import build_content
from scalinglab.report.figures import (
    ReportFigure,
    figure_bytes,
    loss_vs_compute_figure,
    make_figures,
    save_figures,
)
from scalinglab.runs import load_runs

EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
ALL_FIGURES = [
    "loss_vs_compute",
    "separate_effects",
    "isoflop",
    "residuals",
    "bootstrap",
    "allocation",
]


@pytest.fixture(scope="module")
def chinchilla_runs(shared_data):
    return load_runs(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv", drop_top_loss=5)


@pytest.fixture(scope="module")
def boot_fit(chinchilla_runs):
    # 16 resamples: enough for a distribution to draw, cheap enough for the default suite.
    return fit("chinchilla", chinchilla_runs, bootstrap=16, seed=1)


@pytest.fixture(scope="module")
def content(chinchilla_runs, boot_fit):
    return build_content(chinchilla_runs, boot_fit, budgets=(5.76e23,))


def test_every_figure_from_a_bootstrapped_chinchilla_fit(content):
    figures = make_figures(content)
    assert [f.name for f in figures] == ALL_FIGURES
    for f in figures:
        assert isinstance(f, ReportFigure)
        assert f.title and f.caption
        for ax in f.figure.axes:
            if ax.get_label() == "<colorbar>":
                continue
            assert ax.get_xlabel(), f"{f.name}: an axis without a label"


def test_loss_vs_compute_has_log_axes_units_and_legend(content):
    fig = loss_vs_compute_figure(content)
    ax = fig.figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "FLOP" in ax.get_xlabel()
    assert "nats" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "plan" in labels
    assert any("bootstrap" in t for t in labels)
    # the PF-day axis on top: 1 PF-day = 8.64e19 FLOP
    (secondary,) = ax.child_axes
    assert "PF-days" in secondary.get_xlabel()


def test_point_labels_match_the_points_drawn(content):
    fig = loss_vs_compute_figure(content)
    ax = fig.figure.axes[0]
    for gid, labels in fig.point_labels.items():
        (artist,) = [c for c in ax.collections if c.get_gid() == gid]
        assert len(artist.get_offsets()) == len(labels)
    assert sum(len(v) for v in fig.point_labels.values()) == len(content.runs)


def test_figures_leave_global_matplotlib_state_alone(content):
    before = dict(mpl.rcParams)
    backend = mpl.get_backend()
    figures = make_figures(content)
    figure_bytes(figures[0], "svg")
    assert dict(mpl.rcParams) == before
    assert mpl.get_backend() == backend
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == [], "figures must not register with pyplot"


def test_svg_is_valid_and_undated_and_png_is_png(content):
    fig = loss_vs_compute_figure(content)
    svg = figure_bytes(fig, "svg")
    ET.fromstring(svg)  # well-formed XML
    assert b"<dc:date>" not in svg, "no time stamp: a re-run report differs only where data do"
    png = figure_bytes(fig, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpl.image.imread(io.BytesIO(png))
    assert image.shape[0] > 500 and image.shape[1] > 800  # 200 dpi of a 6.4 x 4.4 in figure
    assert float(np.std(image[..., :3])) > 0.05, "a blank image"
    with pytest.raises(ValueError, match="format"):
        figure_bytes(fig, "jpeg")


def test_save_figures_writes_png_and_svg(tmp_path, content):
    fig = loss_vs_compute_figure(content)
    paths = save_figures([fig], tmp_path / "figs")
    assert sorted(p.name for p in paths) == ["loss_vs_compute.png", "loss_vs_compute.svg"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_runs_without_a_fit_get_the_runs_figure_only(chinchilla_runs):
    plain = build_content(chinchilla_runs, None)
    figures = make_figures(plain)
    assert [f.name for f in figures] == ["loss_vs_compute", "isoflop"]
    assert plain.frontier is None and plain.runs.predicted is None


def test_published_fit_without_bootstrap_draws_no_bands(chinchilla_runs):
    published = Fit.from_params("chinchilla", EPOCH)
    c = build_content(chinchilla_runs, published, budgets=(5.76e23,))
    names = [f.name for f in make_figures(c)]
    assert "bootstrap" not in names
    assert c.frontier is not None and c.frontier.lo is None
    # Besiroglu et al.'s law at Chinchilla's budget: the closed-form optimum of Hoffmann et al.
    # (2022, eq. 4), G = (αA/(βB))^(1/(α+β)), N_opt = G·(C/6)^(β/(α+β)).
    e = EPOCH
    g = (e["alpha"] * e["A"] / (e["beta"] * e["B"])) ** (1 / (e["alpha"] + e["beta"]))
    n_opt = g * (5.76e23 / 6) ** (e["beta"] / (e["alpha"] + e["beta"]))
    assert c.plan.params == pytest.approx(n_opt, rel=1e-6)


def test_flops_only_law_draws_the_law_itself_and_no_slices(chinchilla_runs):
    power = fit("power", chinchilla_runs, law_options={"x": "flops"})
    c = build_content(chinchilla_runs, power, budgets=(5.76e23,))
    names = [f.name for f in make_figures(c)]
    assert "separate_effects" not in names and "allocation" not in names
    assert c.frontier is not None
    assert np.allclose(c.frontier.y, power.predict(flops=c.frontier.x))


def test_slices_flatten_to_the_other_terms_floor(content):
    # At fixed D the Chinchilla law tends to E + B/D^β as N grows: the slice's asymptote.
    boot = content
    assert len(boot.slices_fixed_tokens) == 3
    for sl in boot.slices_fixed_tokens:
        assert np.all(np.diff(sl.curve.y) < 0)
        assert sl.asymptote < sl.curve.y.min()


def test_plan_check_draws_predictions_with_intervals_and_measurements(chinchilla_runs, boot_fit):
    from scalinglab.report.figures import plan_check_figure
    from scalinglab.report.values import TrainedRun

    budget = 5.76e23
    lo, hi = boot_fit.prediction_interval(0.9, params=7e10, tokens=1.37e12)
    plan = TrainedRun(
        "plan",
        7e10,
        1.37e12,
        budget,
        boot_fit.predict(params=7e10, tokens=1.37e12),
        (float(lo), float(hi)),
        0.9,
        1.95,
    )
    untrained = TrainedRun("20 tokens/param", 6.9e10, 1.39e12, budget, 1.98)
    c = build_content(chinchilla_runs, boot_fit, budgets=(budget,), trained=(plan, untrained))
    figures = make_figures(c)
    assert figures[0].name == "plan_check"
    ax, ax_zoom = figures[0].figure.axes[:2]
    assert ax.get_xscale() == "log" and "FLOP" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "plan: predicted" in labels and "plan: measured" in labels
    assert "20 tokens/param: predicted" in labels
    assert "20 tokens/param: measured" not in labels, "nothing measured, nothing drawn"
    assert [t.get_text() for t in ax_zoom.get_xticklabels()] == ["plan", "20 tokens/param"]
    # The measured point is drawn where it was measured; the table says whether it fell inside.
    table = c.trained_table
    assert table["measured loss"].iloc[0] == 1.95 and pd.isna(table["measured loss"].iloc[1])
    inside = "yes" if lo <= 1.95 <= hi else "no"
    assert table["inside the interval"].iloc[0] == inside
    assert pd.isna(table["inside the interval"].iloc[1])
    assert (
        "plan: predicted → measured",
        f"{plan.predicted:.4f} → 1.9500 ({100 * (1.95 / plan.predicted - 1):+.2f}%)",
    ) in c.facts
    assert plan_check_figure(build_content(chinchilla_runs, boot_fit)) is None
