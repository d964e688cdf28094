"""Fits of whole training curves: valid checkpoints by schedule, early cut, thinning, weights."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalinglab import fit, fit_procedure, load_runs
from scalinglab.cli import app
from scalinglab.fitting import FitError
from scalinglab.importers import import_runs
from scalinglab.procedures import BacktestError, ProcedureError, backtest, rolling
from scalinglab.procedures.curves import CURVE_WEIGHT, RUN_END, curve_points
from scalinglab.procedures.inner import INCLUSIVE
from scalinglab.runs import RunsError
from scalinglab.store import Store
from test_store import SPEC, fake_result, make_run

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
    fr.loc[3, "schedule"] = "cyclic"
    with pytest.raises(ProcedureError, match="row 4: schedule 'cyclic' is not one of") as err:
        curve_points(load_runs(fr))
    assert err.value.field == "schedule"
    with pytest.raises(ProcedureError, match="early_fraction"):
        curve_points(load_runs(fr), schedule="constant", early_fraction=1.0)
    with pytest.raises(ProcedureError, match=r"schedule must be one of .* reads as decay"):
        curve_points(load_runs(fr), schedule="cosine")


def test_stored_schedule_names_are_read_and_said():
    """A trainer's or importer's schedule name reads as decay or constant; a run without one
    gets the default or the given schedule, and the notes say which."""
    fr = curves_frame(sizes=(2e7, 5e7, 1e8), points=20)
    fr["schedule"] = fr["run_id"].map({"n2e+07": "cosine", "n5e+07": "constant_with_warmup"})
    kept, notes = curve_points(load_runs(fr), max_points=100)
    counts = kept.frame.groupby("run_id").size()
    # cosine and the default decay keep one point; the constant run keeps its checkpoints.
    assert counts["n2e+07"] == 1 and counts["n1e+08"] == 1 and counts["n5e+07"] > 10
    assert notes[-1] == (
        "schedule from the table: 1 run constant_with_warmup → constant; 1 run cosine → decay; "
        "1 run without one → decay, the default (--schedule sets it)"
    )
    kept, notes = curve_points(load_runs(fr), schedule="shared", max_points=100)
    assert (kept.frame.groupby("run_id").size() >= 10).all()
    assert notes[-1] == (
        "schedule shared for every run as given, over the table's own for 2 runs "
        "(constant_with_warmup, cosine)"
    )


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


# -------------------------------------------------------------------------------------------
# curves read from a store (built through the store API: no training)


def store_with_curves(path, curves, spec=SPEC):
    """A store with sweep ``s1`` (or ``spec``'s) holding ``curves``: (run, [(tokens, val_loss,
    train_loss)])."""
    with Store(path) as store:
        store.add_sweep(spec, [run for run, _ in curves])
        for run, points in curves:
            result = fake_result(run)
            result["curve"] = [
                {"tokens": t, "val_loss": v, "train_loss": tr} for t, v, tr in points
            ]
            losses = [v for _, v, _ in points if v is not None]
            result["val_loss"] = losses[-1] if losses else result["val_loss"]
            store.record_result(run, result)
    return path


def law_curve(run, checkpoints=8):
    """Evaluations on the law at ``checkpoints`` tokens to the run's end, and a training-loss
    log point between each two (val_loss None), as the trainer stores them."""
    tokens = np.geomspace(run.tokens / 16, run.tokens, checkpoints).astype(int)
    out = []
    for a, b in itertools.pairwise(tokens):
        out += [(int(a), law(run.params, a), 9.0), (int((a + b) // 2), None, 9.0)]
    return [*out, (int(tokens[-1]), law(run.params, tokens[-1]), 9.0)]


def test_store_curves_are_the_runs_checkpoints(tmp_path):
    cosine = [make_run(1, 2**18), make_run(2, 2**19)]
    wsd = make_run(3, 2**20, branches=(2**18, 2**19))
    path = store_with_curves(tmp_path / "s.db", [(r, law_curve(r)) for r in [*cosine, wsd]])
    finals = load_runs(path)  # one row per run and cooldown, as before
    assert len(finals) == 5
    runs = load_runs(path, curves=True)
    fr = runs.frame
    assert len(fr) == 3 * 8 + 2  # 8 evaluations per run, and the two cooldowns
    assert runs.param_basis == "non_embedding"
    assert any("left out 21 curve points without a validation loss" in n for n in runs.notes)
    assert fr["flops"].to_numpy() == pytest.approx(6 * fr["params"] * fr["tokens"])
    trunk = fr[fr["kind"] == "run"]  # the cooldowns hold fake_result's loss
    assert trunk["loss"].to_numpy() == pytest.approx(law(trunk["params"], trunk["tokens"]))
    assert set(fr.groupby("run_id")["schedule"].first()) == {"cosine", "wsd"}
    # The ends: each run's last checkpoint, and each cooldown under its trunk's run_id.
    ends = fr[fr[RUN_END]]
    assert len(ends) == 5 and ends["run_id"].nunique() == 3
    # The run ends are the final points, in their order (a fit of either sees the same table).
    cols = ["params", "tokens", "flops", "loss", "run_id"]
    pd.testing.assert_frame_equal(ends[cols].reset_index(drop=True), finals.frame[cols])
    kept, notes = curve_points(runs)
    assert (
        len(kept) == 5
        and notes[-1] == "schedule from the table: 2 runs cosine → decay; 1 run wsd → decay"
    )
    weights = kept.frame.groupby("run_id")[CURVE_WEIGHT].agg(["sum", "size"])
    assert weights["sum"].to_numpy() == pytest.approx(1.0) and sorted(weights["size"]) == [1, 1, 3]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fit_procedure_fits_a_stores_curves(tmp_path):
    """Constant-rate curves on the law, stored: the store's schedule (cosine) keeps one point
    per run; --schedule constant fits every checkpoint and recovers the law."""
    runs = [make_run(layers, tokens) for layers in (1, 2, 4, 8) for tokens in (2**18, 2**20)]
    path = store_with_curves(tmp_path / "s.db", [(r, law_curve(r, 12)) for r in runs])
    ends = fit_procedure("curves", path, bootstrap=0, planner=False)
    assert "schedule from the table: 8 runs cosine → decay" in ends.why
    whole = fit_procedure("curves", str(path), bootstrap=0, planner=False, schedule="constant")
    assert "over the table's own for 8 runs (cosine)" in whole.why
    n, d = np.array([r.params for r in runs]), np.array([r.tokens / 2 for r in runs])
    assert whole.predict(params=n, tokens=d) == pytest.approx(law(n, d), rel=2e-3)


def test_too_few_runs_after_the_schedule_says_what_it_kept(tmp_path):
    runs = [make_run(1, 2**18), make_run(2, 2**19), make_run(3, 2**20)]
    path = store_with_curves(tmp_path / "s.db", [(r, law_curve(r)) for r in runs])
    with pytest.raises(FitError, match=r"got 3 .*schedule from the table: 3 runs cosine → decay"):
        fit_procedure("curves", path, bootstrap=0)


def test_cli_fit_a_stores_curves(tmp_path):
    runs = [make_run(layers, tokens) for layers in (1, 2, 4) for tokens in (2**18, 2**20)]
    path = store_with_curves(tmp_path / "s.db", [(r, law_curve(r)) for r in runs])
    result = CliRunner().invoke(
        app, ["fit", str(path), "--curves", "--schedule", "constant", "-B", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["procedure"]["procedure"] == "curves"
    assert any("curve points without a validation loss" in n for n in data["runs_notes"])


def _bad(run, case):
    points = law_curve(run)
    if case == "one point":
        return points[-1:]
    i = len(points) - 3
    value = {"NaN": None, "negative": -1.0, "inf": np.inf}[case]
    points[i] = (points[i][0], value, None if case == "NaN" else 9.0)
    return points


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no curves", "no training curves in the store (3 finished runs"),
        ("one point", "its curve has 1 checkpoint with a loss; a curve needs 2 or more"),
        ("NaN", "tokens: loss (val_loss) is NaN or missing"),
        ("negative", "tokens: loss (val_loss) -1.0 is not a finite positive number"),
        ("inf", "tokens: loss (val_loss) inf is not a finite positive number"),
    ],
)
def test_bad_store_curves_are_refused_in_one_line(tmp_path, case, message):
    runs = [make_run(1, 2**18), make_run(2, 2**19), make_run(3, 2**20)]
    curves = [(r, [] if case == "no curves" else law_curve(r)) for r in runs]
    if case != "no curves":
        curves[1] = (runs[1], _bad(runs[1], case))
    path = store_with_curves(tmp_path / "s.db", curves)
    if case == "no curves":  # the runs hold their final losses: the plain fit reads them
        assert len(load_runs(path)) == 3
    with pytest.raises(RunsError, match=re.escape(message)) as err:
        load_runs(path, curves=True)
    if case != "no curves":
        assert f"run {runs[1].key[:12]} (sweep s1)" in str(err.value)
    result = CliRunner().invoke(app, ["fit", str(path), "--curves"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message.split(" (")[0] in result.output


# -------------------------------------------------------------------------------------------
# the rolling-origin backtest of the curve procedure: curves cut at each cut, run ends scored

BACKTEST = {"n_cuts": 2, "bootstrap": 0, "allocation": False}


def spy_fits(monkeypatch):
    """Every (procedure, runs) the backtest fits, in order (the fits table's order)."""
    seen = []
    real = rolling.fit_procedure

    def recording(proc, runs, **kwargs):
        seen.append((proc.name, runs))
        return real(proc, runs, **kwargs)

    monkeypatch.setattr(rolling, "fit_procedure", recording)
    return seen


def two_sweep_store(path):
    """Sweep ``s1``: twelve runs (four sizes, three lengths) whose curves lie on the law, stored
    as cosine; sweep ``s2``: three more runs (another seed)."""
    runs = [make_run(layers, t) for layers in (1, 2, 4, 8) for t in (2**17, 2**19, 2**21)]
    store_with_curves(path, [(r, law_curve(r, 12)) for r in runs])
    other = [make_run(layers, 2**18, seed=1) for layers in (1, 2, 4)]
    return store_with_curves(path, [(r, law_curve(r)) for r in other], replace(SPEC, name="s2"))


@pytest.fixture
def law_store(tmp_path):
    """Sweep ``s1`` of :func:`two_sweep_store`, alone in its store."""
    runs = [make_run(layers, t) for layers in (1, 2, 4, 8) for t in (2**17, 2**19, 2**21)]
    return store_with_curves(tmp_path / "s.db", [(r, law_curve(r, 12)) for r in runs])


def held_out(result, procedure, cut):
    p = result.predictions
    p = p[(p["procedure"] == procedure) & (p["cut_flops"] == cut)]
    return p.sort_values(["flops", "loss"])[["params", "tokens", "flops", "loss"]].to_numpy()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_backtest_fits_the_curves_below_each_cut_and_scores_run_ends(law_store, monkeypatch):
    seen = spy_fits(monkeypatch)
    result = backtest(law_store, ["curves", "plain"], schedule="constant", **BACKTEST)
    finals = load_runs(law_store).frame
    assert len(seen) == len(result.fits) == 4
    for (name, runs), row in zip(seen, result.fits.itertuples(), strict=True):
        assert name == row.procedure
        cut = row.cut_flops
        fr = runs.frame
        # No checkpoint above the cut reaches the fit.
        assert fr["flops"].max() <= cut * INCLUSIVE
        if name == "curves":
            # The early checkpoints of runs that end above the cut are evidence.
            beyond = set(finals.loc[finals["flops"] > cut * INCLUSIVE, "run_id"])
            assert beyond & set(fr["run_id"])
            assert row.n_train > len(finals[finals["flops"] <= cut * INCLUSIVE])
        else:  # the other procedure fits the run ends below the cut: the final points
            assert len(fr) == row.n_train == (finals["flops"] <= cut * INCLUSIVE).sum()
        # Both are scored on the same points: the final losses above the cut.
        above = finals[finals["flops"] > cut * INCLUSIVE].sort_values(["flops", "loss"])
        expect = above[["params", "tokens", "flops", "loss"]].to_numpy()
        assert held_out(result, name, cut) == pytest.approx(expect)
    # Constant-rate curves on the law: their checkpoints predict the larger runs' ends well.
    overall = result.overall().set_index("procedure")
    assert overall.loc["curves", "mean_abs_error"] < 0.01


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_backtest_decay_runs_cut_before_their_end_contribute_nothing(law_store, monkeypatch):
    """Stored as cosine (decay): a run whose end lies above the cut gives no point, not its
    last checkpoint below the cut; so the curve fit sees the run ends the plain fit sees."""
    seen = spy_fits(monkeypatch)
    result = backtest(law_store, ["curves", "plain"], **BACKTEST)
    curves = result.fits[result.fits["procedure"] == "curves"]
    assert curves["why"].str.contains("with a decaying schedule contribute nothing").all()
    assert [name for name, _ in seen] == ["curves", "plain"] * 2  # per cut, in order
    for (_, curve), (_, ends) in zip(seen[::2], seen[1::2], strict=True):
        kept, _ = curve_points(curve)
        cols = ["params", "tokens", "loss"]
        got = kept.frame[cols].sort_values(cols).to_numpy()
        assert got == pytest.approx(ends.frame[cols].sort_values(cols).to_numpy())
    p = result.predictions
    c, q = p[p["procedure"] == "curves"], p[p["procedure"] == "plain"]
    assert c["predicted"].to_numpy() == pytest.approx(q["predicted"].to_numpy(), rel=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_backtest_without_a_curve_procedure_is_unchanged(law_store):
    """A non-curve procedure reads the final points as before, and its results do not change
    when a curve procedure joins the backtest."""
    alone = backtest(law_store, ["plain"], **BACKTEST)
    finals = backtest(load_runs(law_store), ["plain"], **BACKTEST)
    mixed = backtest(law_store, ["curves", "plain"], schedule="constant", **BACKTEST)
    cols = ["cut_flops", "params", "tokens", "flops", "loss", "predicted", "lo", "hi"]
    pd.testing.assert_frame_equal(alone.predictions[cols], finals.predictions[cols])
    mine = mixed.predictions[mixed.predictions["procedure"] == "plain"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.predictions[cols], mine[cols])
    assert list(alone.fits["n_train"]) == list(
        mixed.fits.loc[mixed.fits["procedure"] == "plain", "n_train"]
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_backtest_a_curve_table(monkeypatch):
    """A table of curves (rows sharing a run_id), not a store: the same cut and scoring."""
    frame = curves_frame(sizes=np.geomspace(2e7, 5e8, 7), points=20, schedule="constant")
    seen = spy_fits(monkeypatch)
    result = backtest(frame, ["curves"], **BACKTEST)
    assert len(result.predictions) > 0
    ends = frame.loc[frame.groupby("run_id")["tokens"].idxmax()]
    for (_, runs), row in zip(seen, result.fits.itertuples(), strict=True):
        assert runs.frame["flops"].max() <= row.cut_flops * INCLUSIVE
        p = result.predictions[result.predictions["cut_flops"] == row.cut_flops]
        assert sorted(p["tokens"]) == pytest.approx(
            sorted(
                ends.loc[6 * ends["params"] * ends["tokens"] > row.cut_flops * INCLUSIVE, "tokens"]
            )
        )
    with pytest.raises(BacktestError, match="schedule applies to a curve procedure") as err:
        backtest(frame, ["plain"], schedule="constant", **BACKTEST)
    assert err.value.field == "schedule"


# -------------------------------------------------------------------------------------------
# one sweep of a store


def test_load_runs_reads_one_sweep(tmp_path):
    path = two_sweep_store(tmp_path / "s.db")
    assert len(load_runs(path)) == 15
    assert len(load_runs(path, sweep="s1")) == 12
    two = load_runs(path, sweep="s2", curves=True)
    assert set(two.frame["group"]) == {"s2"} and len(two) == 3 * 8
    with pytest.raises(RunsError, match=r"no sweep named 'nope'; sweeps: s1, s2$") as err:
        load_runs(path, sweep="nope", curves=True)
    assert err.value.field == "sweep"
    with pytest.raises(RunsError, match=r"only a scalinglab store .* holds sweeps") as err:
        load_runs(curves_frame(), sweep="s1")
    assert err.value.field == "sweep"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_backtest_summaries_survive_a_cut_that_cannot_be_fitted(law_store):
    """One cut leaves three runs (too few for the law): its fit row says why, and the
    summaries still build (they failed on the missing chosen name)."""
    result = backtest(law_store, ["plain"], cuts=[2e12, 1e11], bootstrap=0, allocation=False)
    assert list(result.fits["chosen"].isna()) == [False, True]
    assert "could not fit" in result.fits["why"].iloc[1]
    assert result.by_group()["chosen"].tolist() == ["plain"]


# -------------------------------------------------------------------------------------------
# where a schedule ends: WSD's stable phase, and decaying runs stopped before their end


def wsd_store(path, gain=1.05):
    """Four WSD trunks (two cooldowns each) whose run ends lie on the law and whose other
    checkpoints sit ``gain`` above it (the stable phase, before the cooldown's drop)."""
    trunks = [make_run(layers, 2**21, branches=(2**18, 2**19)) for layers in (1, 2, 4, 8)]
    with Store(path) as store:
        store.add_sweep(SPEC, trunks)
        for run in trunks:
            result = fake_result(run)
            tokens = np.geomspace(run.tokens / 16, run.tokens, 12).astype(int)
            above = np.where(tokens == tokens[-1], 1.0, gain)
            result["curve"] = [
                {"tokens": int(t), "val_loss": law(run.params, t) * g}
                for t, g in zip(tokens, above, strict=True)
            ]
            result["val_loss"] = law(run.params, run.tokens)
            for b in result["branches"]:
                b["val_loss"] = law(run.params, b["tokens"])
            store.record_result(run, result)
    return path


def test_store_curves_say_where_a_wsd_stable_phase_and_a_schedule_end(tmp_path):
    fr = load_runs(wsd_store(tmp_path / "s.db"), curves=True).frame
    trunk = fr[fr["kind"] == "run"]
    # decay_tokens is WSD's final cooldown, 20% of the run: the stable phase ends before it.
    assert set(trunk["stable_tokens"]) == {2**21 - round(0.2 * 2**21)}
    assert set(trunk["schedule_tokens"]) == {2**21}
    branches = fr[fr["kind"] == "branch"]
    assert branches["stable_tokens"].isna().all()
    assert (branches["schedule_tokens"] == branches["tokens"]).all()


@pytest.mark.parametrize("schedule", ["constant", "shared"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_wsd_stable_phase_is_not_read_as_constant_rate_run_ends(tmp_path, schedule):
    """Read as constant (or shared), a WSD run's stable phase sits above its cooldown ends by
    the cooldown's gain: only the run ends are kept, so the law is recovered."""
    runs = load_runs(wsd_store(tmp_path / "s.db"), curves=True)
    kept, notes = curve_points(runs, schedule=schedule)
    assert kept.frame[RUN_END].all() and len(kept) == 4 * 3
    assert any(
        "left out 44 checkpoints of 4 runs with a WSD schedule before their run's end" in n
        and "not comparable" in n
        for n in notes
    )
    pf = fit_procedure("curves", runs, bootstrap=0, planner=False, schedule=schedule)
    n, d = kept.frame["params"].to_numpy(), kept.frame["tokens"].to_numpy()
    assert pf.predict(params=n, tokens=d) == pytest.approx(law(n, d), rel=1e-3)


def imported_store(path, stop=0.6):
    """Eight runs imported from a long table (four sizes, cosine to 1e5 or 3e5 tokens) and run
    ``k``, logged only to ``stop`` of its 3e5 tokens (killed, or still running)."""
    runs = {
        f"r{i}{j}": (n, length)
        for i, n in enumerate(np.geomspace(1e6, 3e7, 4))
        for j, length in enumerate((100_000, 300_000))
    }
    runs["k"] = (1e7, 300_000)
    rows = [
        {"experiment": name, "tokens": t, "val_loss": law(n, t)}
        for name, (n, length) in runs.items()
        for t in np.linspace(length / 10, length * (stop if name == "k" else 1), 10).round()
    ]
    pd.DataFrame(rows).to_csv(path.with_suffix(".csv"), index=False)
    meta = {
        "param_basis": "total",
        "flops_method": "6nd",
        "schedule": "cosine",
        "columns": {"run": "experiment"},
        "runs": {k: {"params": int(n), "schedule_tokens": t} for k, (n, t) in runs.items()},
    }
    result = import_runs([path.with_suffix(".csv")], store=path, meta=meta)
    return path, {r.name: r.run_id[:12] for r in result.runs}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_decaying_run_stopped_before_its_schedule_end_has_no_run_end(tmp_path):
    path, ids = imported_store(tmp_path / "s.db")
    runs = load_runs(path, curves=True)
    assert set(runs.frame["schedule_tokens"]) == {100_000, 300_000}
    ends = rolling.mark_run_ends(runs).frame
    ends = ends[ends[RUN_END]]
    assert sorted(ends["run_id"]) == sorted(v for k, v in ids.items() if k != "k")
    kept, notes = curve_points(runs)
    assert ids["k"] not in set(kept.frame["run_id"]) and len(kept) == 8
    named = [n for n in notes if n.startswith("no run end")]
    assert named == [
        "no run end for 1 run with a decaying schedule whose last checkpoint lies before the "
        "schedule's end (killed, or still running): the rate had not decayed there, so they "
        f"contribute nothing: {ids['k']} (1.8e+05 of 3e+05 tokens)"
    ]
    pf = fit_procedure("curves", path, bootstrap=0, planner=False)
    assert named[0] in pf.curve_notes and named[0] in pf.why
    assert pf.fit.diagnostics["curves"]["notes"] == list(pf.curve_notes)
    # Read as constant, its checkpoints are constant-rate runs of their length: all kept, and
    # its last one ends it.
    kept, notes = curve_points(runs, schedule="constant", max_points=100)
    assert ids["k"] in set(kept.frame["run_id"])
    assert not any(n.startswith("no run end") for n in notes)
    ends = rolling.mark_run_ends(runs, schedule="constant").frame
    assert ids["k"] in set(ends.loc[ends[RUN_END], "run_id"])
    # Logged to its schedule's end (within 1%), the same run ends its schedule.
    path, ids = imported_store(tmp_path / "t.db", stop=0.995)
    kept, notes = curve_points(load_runs(path, curves=True))
    assert ids["k"] in set(kept.frame["run_id"])
    assert not any(n.startswith("no run end") for n in notes)
