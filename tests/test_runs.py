"""The runs table: formats, aliases, derivation from C = 6·N·D, errors naming row and column."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scalinglab.runs.sources as runs_sources
from scalinglab.errors import ScalingLabError
from scalinglab.runs import Runs, RunsError, RunsWarning, load_runs
from scalinglab.store import StoreError


def _frame(n: int = 6) -> pd.DataFrame:
    params = np.geomspace(1e7, 1e9, n)
    tokens = 20 * params
    return pd.DataFrame(
        {"N": params, "D": tokens, "C": 6 * params * tokens, "loss": 3.0 - 0.1 * np.arange(n)}
    )


def test_chinchilla_file_and_drop_top_loss(shared_data):
    path = shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv"
    runs = load_runs(path)
    assert len(runs) == 245
    assert list(runs.frame.columns[:4]) == ["params", "tokens", "flops", "loss"]
    assert runs.frame["params"].dtype == np.float64
    assert "column 'N' read as params" in runs.notes
    # Besiroglu et al. (2024) fit the 240 rows left after dropping the 5 highest losses.
    kept = load_runs(path, drop_top_loss=5)
    assert len(kept) == 240
    assert bool(kept.frame["in_epoch_fit"].all())
    assert any("dropped the 5 runs" in n for n in kept.notes)


def test_svg_file_derives_tokens(shared_data):
    runs = load_runs(shared_data / "chinchilla_epoch" / "svg_extracted_data.csv")
    assert "tokens derived as flops/(6*params)" in runs.notes
    fr = runs.frame
    np.testing.assert_allclose(fr["tokens"], fr["flops"] / (6 * fr["params"]))


def test_third_column_derived_each_way():
    base = _frame()
    for drop, note in (("C", "flops derived"), ("D", "tokens derived"), ("N", "params derived")):
        runs = load_runs(base.drop(columns=[drop]))
        assert any(n.startswith(note) for n in runs.notes)
        np.testing.assert_allclose(
            runs.frame["flops"], 6 * runs.frame["params"] * runs.frame["tokens"]
        )


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl", ".json"])
def test_formats(tmp_path, suffix):
    frame = _frame().rename(columns={"N": "Model Size", "C": "Training FLOP", "loss": "val_loss"})
    frame = frame.drop(columns=["D"])
    path = tmp_path / f"runs{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_json(path, orient="records")
    runs = load_runs(path)
    assert runs.source == str(path)
    np.testing.assert_allclose(runs.frame["params"], frame["Model Size"])
    np.testing.assert_allclose(runs.frame["loss"], frame["val_loss"])


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "runs.xlsx").write_text("x")
    with pytest.raises(RunsError, match=r"unknown file type '\.xlsx'"):
        load_runs(tmp_path / "runs.xlsx")
    with pytest.raises(RunsError, match="no such file"):
        load_runs(tmp_path / "absent.csv")


def test_explicit_mapping_either_direction():
    frame = pd.DataFrame(
        {"size": [1e8, 2e8, 4e8], "seen": [1e9, 2e9, 4e9], "nats": [3.0, 2.9, 2.8]}
    )
    a = load_runs(frame, columns={"params": "size", "tokens": "seen", "loss": "nats"})
    b = load_runs(frame, columns={"size": "params", "seen": "tokens", "nats": "loss"})
    pd.testing.assert_frame_equal(a.frame, b.frame)
    with pytest.raises(RunsError, match="no column 'Size'"):
        load_runs(frame, columns={"params": "Size"})
    with pytest.raises(RunsError, match="names no canonical column"):
        load_runs(frame, columns={"size": "width"})


def test_preferred_alias_and_optional_columns():
    frame = _frame(4)
    frame["train_loss"] = frame["loss"] + 0.1
    frame["recipe"] = ["a", "a", "b", "b"]
    frame["step"] = [10, 20, 10, 20]
    frame["run_id"] = ["r1", "r1", "r2", "r2"]
    runs = load_runs(frame)
    np.testing.assert_allclose(runs.frame["loss"], frame["loss"])
    assert runs.frame["step"].dtype == np.int64
    assert list(runs.cluster_ids("run")) == [0, 0, 1, 1]
    assert list(runs.cluster_ids("group")) == [0, 0, 1, 1]
    assert "train_loss" in runs.frame.columns  # kept, unvalidated


def test_param_basis():
    assert load_runs(_frame(), param_basis="non-embedding").param_basis == "non_embedding"
    hinted = _frame().rename(columns={"N": "non_embedding_params"})
    assert load_runs(hinted).param_basis == "non_embedding"
    with pytest.raises(RunsError, match="param_basis must be one of"):
        load_runs(_frame(), param_basis="some")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "'abc' is not a number"),
        (np.nan, "value is missing"),
        (np.inf, "value is infinite"),
        (-1.0, "must be > 0"),
        (0.0, "must be > 0"),
    ],
)
def test_bad_value_names_row_and_column(value, message):
    frame = _frame().astype({"loss": object})
    frame.loc[3, "loss"] = value
    with pytest.raises(RunsError) as info:
        load_runs(frame)
    assert "row 4" in str(info.value)
    assert "column 'loss'" in str(info.value)
    assert message in str(info.value)
    assert info.value.field == "loss"


def test_missing_columns_listed():
    with pytest.raises(RunsError, match="missing columns tokens, flops"):
        load_runs(pd.DataFrame({"N": [1e8], "loss": [3.0]}))
    with pytest.raises(RunsError, match="missing column loss"):
        load_runs(_frame().drop(columns=["loss"]))
    with pytest.raises(RunsError, match="no rows"):
        load_runs(_frame().iloc[:0])


def test_warnings_for_duplicates_and_flops_mismatch():
    frame = pd.concat([_frame(), _frame().iloc[[2]]], ignore_index=True)
    with pytest.warns(RunsWarning, match=r"1 duplicate rows \(rows 7\)"):
        load_runs(frame)
    off = _frame()
    off.loc[1, "C"] *= 1.5
    with pytest.warns(RunsWarning, match=r"1 of 6 rows have flops more than 10%.*row 2"):
        load_runs(off)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_runs(_frame())  # a clean table warns of nothing


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: load_runs(pd.DataFrame({"N": [1e8], "loss": [3.0]})), "tokens"),
        (lambda: load_runs(_frame().drop(columns=["loss"])), "loss"),
        (lambda: load_runs(_frame(), columns={"params": "Size"}), "columns"),
        (lambda: load_runs(_frame(), param_basis="some"), "param_basis"),
        (lambda: load_runs(_frame(3), drop_top_loss=3), "drop_top_loss"),
        (lambda: load_runs("no/such/file.csv"), "source"),
        (lambda: load_runs(_frame()).cluster_ids("group"), "group"),
        (lambda: load_runs(_frame()).cluster_ids("seed"), "by"),
    ],
)
def test_errors_name_their_field(call, field):
    # The CLI maps an error to its option by this field, never by the message's text.
    with pytest.raises(ScalingLabError) as info:
        call()
    assert isinstance(info.value, RunsError) and info.value.field == field


def test_html_repr_shows_counts_ranges_rows_and_notes():
    runs = load_runs(_frame(30).rename(columns={"N": "Model Size"}))
    page = runs._repr_html_()
    assert "<strong>30 runs</strong> from &lt;DataFrame&gt;" in page
    assert "N counts unknown parameters" in page
    assert "loss 0.1–3" in page
    assert "<table" in page and page.count("<tr") < 30  # long tables are cut to their ends
    assert "column &#x27;Model Size&#x27; read as params" in page


def test_drop_top_loss_validation():
    with pytest.raises(RunsError, match="would drop all"):
        load_runs(_frame(3), drop_top_loss=3)
    with pytest.raises(RunsError, match="whole number"):
        load_runs(_frame(3), drop_top_loss=-1)


def test_store_dispatch(tmp_path, monkeypatch):
    store = tmp_path / "scalinglab.db"
    store.write_bytes(b"")
    asked = []

    def read(path, curves=False, sweep=None):
        asked.append((curves, sweep))
        return _frame()

    monkeypatch.setattr(runs_sources, "load_store_runs", read)
    runs = load_runs(store)
    assert isinstance(runs, Runs) and len(runs) == 6 and runs.source == str(store)
    load_runs(store, curves=True)  # the store's training curves (tests/test_curves.py)
    load_runs(store, sweep="s1")  # one sweep's
    assert asked == [(False, None), (True, None), (False, "s1")]


def test_store_errors_are_runs_errors(tmp_path):
    """The store's own error (tests/test_store.py has its cases) reaches the user as a RunsError."""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(RunsError, match="an empty file, not a scalinglab store") as err:
        load_runs(empty)
    assert isinstance(err.value.__cause__, StoreError)


_BAD = st.sampled_from([np.nan, np.inf, -np.inf, -3.0, 0.0, "x", ""])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.integers(0, 5), column=st.sampled_from(["N", "D", "C", "loss"]), bad=_BAD)
def test_any_bad_cell_is_named(row, column, bad):
    frame = _frame().astype(object)
    frame.loc[row, column] = bad
    with pytest.raises(RunsError) as info:
        load_runs(frame)
    text = str(info.value)
    assert f"row {row + 1}," in text and f"column '{column}'" in text


def test_as_runs_takes_runs_frames_and_paths(tmp_path):
    from scalinglab.runs import as_runs

    frame = pd.DataFrame({"N": [1e6, 2e6], "D": [1e8, 2e8], "loss": [4.0, 3.5]})
    runs = as_runs(frame)
    assert isinstance(runs, Runs) and runs.source == "<DataFrame>" and len(runs) == 2
    assert as_runs(runs) is runs
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    assert (
        as_runs(path)
        .frame[["params", "tokens", "loss"]]
        .equals(runs.frame[["params", "tokens", "loss"]])
    )
    with pytest.raises(RunsError, match="no such file"):
        as_runs(tmp_path / "absent.csv")


@pytest.mark.parametrize("column", ["params", "tokens"])
def test_a_product_that_overflows_is_refused_naming_row_and_column(column) -> None:
    # Root cause 6: 1e308 is a finite positive cell, but 6·N·D is inf; it reached the fit's
    # domain (reliable: true), the plan (TypeError) and the report (OverflowError).
    frame = pd.DataFrame(
        {"params": [1e8, 2e8, 4e8], "tokens": [2e9, 4e9, 8e9], "loss": [3, 2.9, 2.8]}
    )
    frame.loc[1, column] = 1e308
    with pytest.raises(RunsError, match="row 2, column " + column) as caught:
        load_runs(frame)
    assert caught.value.field == column and "not a finite" in str(caught.value)


@pytest.mark.parametrize("bad", [42, None, 3.5, b"runs.csv", ["runs.csv"]])
def test_load_runs_of_a_non_source_names_the_argument(bad) -> None:
    with pytest.raises(RunsError, match="source must be a file path") as caught:
        load_runs(bad)  # type: ignore[arg-type]
    assert caught.value.field == "source"
