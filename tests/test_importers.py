"""``scalinglab.importers``: each log format read back equal to what its own writer wrote,
resumed jobs stitched, metadata never guessed, idempotent imports, and each bad input one
line with nothing written."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.importers import LogImportError, import_runs, metric_kind, read_source
from scalinglab.importers.logs import Series
from scalinglab.importers.metadata import load_metadata
from scalinglab.importers.stitch import WANDB_SEGMENTS, compile_pattern, job_of, stitch
from scalinglab.store import SCHEMA_VERSION, Store, load_store_runs

META = {"param_basis": "total", "flops_method": "6nd", "params": 1_000_000, "tokens_per_step": 1000}
OLMO_META = Path(__file__).resolve().parents[1] / "examples" / "olmo_import.toml"


def tree_digest(path: Path) -> str:
    """Hash of every file's name, bytes and mtime under ``path``: proves it was not written."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*"))
    for p in files:
        digest.update(str(p).encode())
        if p.is_file():
            digest.update(p.read_bytes())
            digest.update(str(p.stat().st_mtime_ns).encode())
    return digest.hexdigest()


def write_panel(
    path: Path, runs: dict[str, dict[int, float]], metric: str, x: str = "Step"
) -> Path:
    """A CSV laid out as W&B's "Export panel data" writes it."""
    steps = sorted({s for points in runs.values() for s in points})
    header = [x]
    for run in runs:
        header += [f"{run} - {metric}", f"{run} - {metric}__MIN", f"{run} - {metric}__MAX"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        for step in steps:
            row: list[str] = [str(step)]
            for points in runs.values():
                v = "" if step not in points else repr(points[step])
                row += [v, v, v]
            writer.writerow(row)
    return path


def curve_of(store: Path, name: str) -> pd.DataFrame:
    with Store(store, readonly=True) as db:
        run_id = db.imports().set_index("name").loc[name, "run_id"]
        if isinstance(run_id, pd.Series):
            run_id = run_id.iloc[-1]
        return db.curve(run_id)


def row_count(store: Path, table: str) -> int:
    with sqlite3.connect(store) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# -- metric kinds and metadata -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("eval/pile-validation/CrossEntropyLoss", "loss"),
        ("eval/downstream/arc_easy_acc", "accuracy"),
        ("eval_accuracy", "accuracy"),
        ("val/ppl", "perplexity"),
        ("eval_perplexity", "perplexity"),
        ("train/loss", "loss"),
        ("learning_rate", "lr"),
        ("throughput/tokens_per_s", "other"),
        ("mmlu_5shot", "accuracy"),
    ],
)
def test_metric_kind(name, kind):
    assert metric_kind(name) == kind


def test_metadata_scopes_and_unknown_key():
    meta = load_metadata(
        {"params": 1, "runs": {"big*": {"params": 2}, "big-a": {"params": 3}}},
        {"params": 5},
    )
    assert meta.merged("small")["params"] == 5  # flags over the top level
    assert meta.merged("big-b")["params"] == 2  # a glob over flags
    assert meta.merged("big-a")["params"] == 3  # the exact name over a glob
    with pytest.raises(LogImportError, match="unknown key 'parms'") as info:
        load_metadata({"runs": {"a": {"parms": 1}}})
    assert info.value.field == "parms"
    with pytest.raises(LogImportError, match="batch_size × seq_len"):
        load_metadata({**META, "batch_size": 2, "seq_len": 4}).resolve("a", has_tokens=False)


# -- stitching -------------------------------------------------------------------------------


def test_stitch_later_segment_wins_and_reports():
    pattern = compile_pattern(WANDB_SEGMENTS)
    assert job_of("OLMo-7B-run-012", pattern) == ("OLMo-7B", 12)
    assert job_of("OLMo-1B", pattern) == ("OLMo-1B", None)
    first = Series("job-run-001", "loss", np.arange(0, 60, 10), np.array([6, 5, 4, 3, 2.9, 2.8]))
    # Resumed from the checkpoint at step 30: steps 30..50 of the first segment are replaced.
    second = Series(
        "job-run-002", "loss", np.arange(30, 90, 10), np.array([3.1, 3, 2.9, 2.8, 2.7, 2.6])
    )
    joined = stitch("job", [(2, second), (1, first)])
    assert joined.segments == ("job-run-001", "job-run-002")
    assert joined.series.steps.tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    assert joined.series.values.tolist() == [6, 5, 4, 3.1, 3, 2.9, 2.8, 2.7, 2.6]
    (overlap,) = joined.overlaps
    assert (overlap.replaced, overlap.by, overlap.points, overlap.first, overlap.last) == (
        "job-run-001",
        "job-run-002",
        3,
        30,
        50,
    )


def test_panel_segments_stitched_into_one_run(tmp_path):
    src = write_panel(
        tmp_path / "panel.csv",
        {
            "gpt-run-002": {300: 2.5, 400: 2.4},
            "gpt-run-001": {100: 3.0, 200: 2.8, 300: 2.7},
        },
        "eval/loss",
    )
    result = import_runs([src], store=tmp_path / "s.db", meta=META)
    (run,) = result.runs
    assert (run.name, run.segments) == ("gpt", ("gpt-run-001", "gpt-run-002"))
    assert (
        "1 points of gpt-run-001 (steps 300-300) replaced by gpt-run-002"
        in result.stitched[0]["overlaps"]
    )
    curve = curve_of(tmp_path / "s.db", "gpt")
    assert curve["tokens"].tolist() == [100_000, 200_000, 300_000, 400_000]
    assert curve["val_loss"].tolist() == [3.0, 2.8, 2.5, 2.4]
    # A user pattern instead of W&B's: "name/partN".
    src2 = write_panel(tmp_path / "p2.csv", {"x/part1": {1: 3.0}, "x/part2": {2: 2.0}}, "loss")
    result = import_runs(
        [src2],
        store=tmp_path / "t.db",
        meta=META,
        stitch_pattern=r"(?P<job>.+)/part(?P<segment>\d+)",
    )
    assert [r.name for r in result.runs] == ["x"]


# -- the four OLMo exports -----------------------------------------------------------------


def test_olmo_exports(shared_data, tmp_path):
    folder = shared_data / "wandb_exports"
    files = sorted(folder.glob("*.csv"))
    before = tree_digest(folder)
    store = tmp_path / "olmo.db"
    result = import_runs(files, store=store, meta=OLMO_META)
    assert tree_digest(folder) == before  # sources are only read
    runs = {r.name: r for r in result.runs}
    assert set(runs) == {"OLMo-7B", "OLMo-7B-Twin-2T", "OLMo-1B"}
    assert len(runs["OLMo-7B"].segments) == 36
    assert len(runs["OLMo-7B-Twin-2T"].segments) == 10
    assert runs["OLMo-1B"].extra_metrics == ("eval/downstream/arc_easy_acc",)
    # One curve for the 7B job: every point of the 36 segments, in step order.
    raw = pd.read_csv(files[0])
    value_cols = [c for c in raw.columns[1:] if not c.endswith(("__MIN", "__MAX"))]
    expected = raw.set_index("Step")[value_cols].stack().dropna().sort_index()
    curve = curve_of(store, "OLMo-7B")
    assert len(curve) == len(expected) == runs["OLMo-7B"].points
    np.testing.assert_array_equal(curve["tokens"], expected.index.get_level_values(0) * 2160 * 2048)
    np.testing.assert_allclose(curve["val_loss"], expected.to_numpy())
    # 556,000 steps × 4,423,680 tokens: the model card's step556000-tokens2460B.
    assert runs["OLMo-7B"].tokens == 556_000 * 2160 * 2048
    # The accuracy panel is a curve of its own kind, never the loss.
    with Store(store, readonly=True) as db:
        acc = db.metric_curves(kind="accuracy")
    assert set(acc["metric"]) == {"eval/downstream/arc_easy_acc"} and len(acc) == 735
    points = load_store_runs(store)
    assert len(points) == 3 and points.attrs["param_basis"] == "total"
    assert points["loss"].between(1.8, 2.2).all()


# -- W&B history tables and long tables ----------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_history_table_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    steps = np.arange(0, 5000, 10)
    frame = pd.DataFrame(
        {
            "_step": steps,
            "_runtime": steps * 0.5,
            "train/loss": 4 - np.log1p(steps) / 5 + rng.normal(0, 0.01, len(steps)),
            "eval/loss": np.where(steps % 100 == 0, 4.1 - np.log1p(steps) / 5, np.nan),
            "eval/hellaswag_acc": np.where(steps % 500 == 0, 0.25 + steps / 1e5, np.nan),
            "throughput": rng.uniform(1, 2, len(steps)),
        }
    )
    path = tmp_path / f"my-run{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    result = import_runs([path], store=tmp_path / "s.db", meta=META)
    (run,) = result.runs
    assert run.name == "my-run" and run.metric == "eval/loss"
    curve = curve_of(tmp_path / "s.db", "my-run")
    evals = frame.dropna(subset=["eval/loss"])
    got = curve.dropna(subset=["val_loss"])
    np.testing.assert_array_equal(got["tokens"], evals["_step"] * 1000)
    np.testing.assert_allclose(got["val_loss"], evals["eval/loss"])
    # The train loss rides along in the same curve; the accuracy in its own table.
    np.testing.assert_allclose(curve["train_loss"].dropna(), frame["train/loss"])
    with Store(tmp_path / "s.db", readonly=True) as db:
        acc = db.metric_curves(kind="accuracy")
    np.testing.assert_allclose(acc["value"], frame["eval/hellaswag_acc"].dropna())


def test_long_table_tokens_and_perplexity(tmp_path):
    rows = [
        {"experiment": name, "tokens": t, "val_ppl": math.exp(5 - i - t / 1e6)}
        for i, name in enumerate(["a", "b"])
        for t in (1e5, 2e5, 3e5)
    ]
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    meta = {"param_basis": "total", "flops_method": "6nd", "columns": {"run": "experiment"}}
    result = import_runs([path], store=tmp_path / "s.db", meta=meta, flags={"params": 10**6})
    assert any("perplexity: stored as its natural log" in n for n in result.notes)
    curve = curve_of(tmp_path / "s.db", "b")
    np.testing.assert_allclose(curve["val_loss"], [4 - t / 1e6 for t in (1e5, 2e5, 3e5)])
    assert curve["tokens"].tolist() == [100_000, 200_000, 300_000]


# -- each tool's own writer ----------------------------------------------------------------


def test_tensorboard_round_trip(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    logs = tmp_path / "tb"
    written = {}
    for name, scale in (("small", 1.0), ("large", 0.8)):
        writer = SummaryWriter(str(logs / name))
        for step in range(0, 1000, 50):
            value = scale * (3 + 10 / (step + 10))
            writer.add_scalar("val/loss", value, step)
            writer.add_scalar("train/grad_norm", 1.0, step)
            written[(name, step)] = value
        writer.close()
    before = tree_digest(logs)
    log = read_source(logs)
    assert log.format == "tensorboard" and "train/grad_norm" in log.ignored
    result = import_runs([logs], store=tmp_path / "s.db", meta=META)
    assert tree_digest(logs) == before
    assert {r.name for r in result.runs} == {"small", "large"}
    for name in ("small", "large"):
        curve = curve_of(tmp_path / "s.db", name)
        expected = [written[(name, s)] for s in range(0, 1000, 50)]
        # TensorBoard stores scalars as float32.
        np.testing.assert_allclose(curve["val_loss"], np.float32(expected))
        assert curve["tokens"].tolist() == [s * 1000 for s in range(0, 1000, 50)]


def test_mlflow_round_trip(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    root = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=root.as_uri())
    experiment = client.create_experiment("scaling")
    written = {}
    for name in ("n1", "n2"):
        run = client.create_run(experiment, run_name=name)
        points = [(s, 3.0 - s / 1000 + (name == "n2")) for s in range(0, 500, 25)]
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("eval_loss", v, 0, s) for s, v in points]
            + [Metric("eval_accuracy", 0.5, 0, s) for s, _ in points],
        )
        client.set_terminated(run.info.run_id)
        written[name] = points
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    before = tree_digest(root)
    result = import_runs([root], store=tmp_path / "s.db", meta=META)
    assert tree_digest(root) == before
    assert {r.name for r in result.runs} == {"n1", "n2"}
    for name, points in written.items():
        curve = curve_of(tmp_path / "s.db", name)
        assert curve["tokens"].tolist() == [s * 1000 for s, _ in points]
        np.testing.assert_allclose(curve["val_loss"], [v for _, v in points])
    with Store(tmp_path / "s.db", readonly=True) as db:
        assert set(db.metric_curves()["kind"]) == {"accuracy"}


def trainer_state(folder: Path, history: list[dict]) -> Path:
    """A state file as ``transformers.TrainerState.save_to_json`` writes it."""
    folder.mkdir(parents=True)
    state = {
        "best_metric": None,
        "epoch": 1.0,
        "eval_steps": 100,
        "global_step": history[-1]["step"],
        "log_history": history,
        "logging_steps": 50,
        "max_steps": history[-1]["step"],
        "num_train_epochs": 1,
        "train_batch_size": 8,
        "total_flos": 1.0e15,
    }
    path = folder / "trainer_state.json"
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    return path


def test_hf_trainer_round_trip(tmp_path):
    history = []
    for step in range(50, 501, 50):
        history.append(
            {
                "epoch": step / 500,
                "grad_norm": 1.0,
                "learning_rate": 1e-4,
                "loss": 3 - step / 1e3,
                "step": step,
            }
        )
        if step % 100 == 0:
            history.append(
                {
                    "epoch": step / 500,
                    "eval_loss": 3.1 - step / 1e3,
                    "eval_runtime": 1.0,
                    "eval_accuracy": step / 1e3,
                    "step": step,
                }
            )
    history.append(
        {"epoch": 1.0, "step": 500, "total_flos": 1e15, "train_loss": 2.7, "train_runtime": 10.0}
    )
    path = trainer_state(tmp_path / "out" / "checkpoint-500", history)
    result = import_runs([tmp_path / "out"], store=tmp_path / "s.db", meta=META)
    (run,) = result.runs
    assert (run.name, run.metric) == ("out", "eval_loss")
    curve = curve_of(tmp_path / "s.db", "out")
    evals = [h for h in history if "eval_loss" in h]
    got = curve.dropna(subset=["val_loss"])
    assert got["tokens"].tolist() == [h["step"] * 1000 for h in evals]
    np.testing.assert_allclose(got["val_loss"], [h["eval_loss"] for h in evals])
    np.testing.assert_allclose(
        curve["train_loss"], [h["loss"] for h in history if "loss" in h]
    )  # the final summary's train_loss average is not a point
    np.testing.assert_allclose(curve["lr"].dropna(), 1e-4)
    assert read_source(path).format == "hf-trainer"


# -- idempotence and versions --------------------------------------------------------------


def test_duplicate_import_adds_nothing_and_changed_source_is_a_version(tmp_path):
    src = write_panel(tmp_path / "p.csv", {"a": {1: 3.0, 2: 2.5}}, "eval/loss")
    store = tmp_path / "s.db"
    import_runs([src], store=store, meta=META)
    digest = tree_digest(store)
    again = import_runs([src], store=store, meta=META)
    assert [r.status for r in again.runs] == ["unchanged"] and not again.imported
    assert tree_digest(store) == digest  # not even opened for writing
    write_panel(src, {"a": {1: 3.0, 2: 2.5, 3: 2.2}}, "eval/loss")
    changed = import_runs([src], store=store, meta=META)
    (run,) = changed.imported
    assert run.version == 2
    assert run.note.startswith("p.csv changed (sha256 ") and "since version 1" in run.note
    # Other metadata is a new version too, and its note names the key.
    (run,) = import_runs([src], store=store, meta={**META, "params": 2_000_000}).imported
    assert run.version == 3 and run.note.startswith("params 1000000 → 2000000; params_total")
    with Store(store, readonly=True) as db:
        versions = db.imports()
    assert versions["version"].tolist() == [1, 2, 3]
    assert versions["current"].tolist() == [0, 0, 1]
    points = load_store_runs(store)  # only the current version is fitted
    assert len(points) == 1 and points["tokens"].iloc[0] == 3000
    assert points["params"].iloc[0] == 2_000_000


# -- bad input: one line, nothing written --------------------------------------------------


def _fails(tmp_path, sources, match, **kwargs):
    store = tmp_path / "never.db"
    with pytest.raises(LogImportError, match=match) as info:
        import_runs(sources, store=store, **kwargs)
    assert "\n" not in str(info.value)
    assert not store.exists()
    return info.value


def test_missing_metadata_names_runs_and_keys(tmp_path):
    src = write_panel(
        tmp_path / "p.csv", {"a-run-001": {1: 3.0}, "a-run-002": {2: 2.0}, "b": {1: 3.0}}, "loss"
    )
    error = _fails(
        tmp_path,
        [src],
        r"missing metadata .*: a, b need params, tokens_per_step \(or batch_size and seq_len\)",
        meta={"param_basis": "total", "flops_method": "6nd"},
    )
    assert error.field == "params"


def test_unknown_column(tmp_path):
    src = write_panel(tmp_path / "p.csv", {"a": {1: 3.0}}, "eval/loss")
    error = _fails(
        tmp_path, [src], "--metric 'eval/lost': no such metric", meta=META, metric="eval/lost"
    )
    assert error.field == "metric"
    table = tmp_path / "t.csv"
    pd.DataFrame({"step": [1], "loss": [3.0]}).to_csv(table, index=False)
    error = _fails(
        tmp_path,
        [table],
        "unknown run column 'experiment'",
        meta={**META, "columns": {"run": "experiment"}},
    )
    assert error.field == "experiment"


def test_accuracy_as_loss_refused(tmp_path):
    src = write_panel(tmp_path / "p.csv", {"a": {1: 0.3, 2: 0.4}}, "eval/downstream/arc_easy_acc")
    _fails(tmp_path, [src], "accuracy-type metric, not a loss", meta=META, metric="*acc")
    # Without --metric the accuracy-only run is skipped, never taken as a loss.
    result = import_runs([src], store=tmp_path / "s.db", meta=META, dry_run=True)
    assert not result.runs and "no loss or perplexity metric" in result.skipped[0][1]


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet", "trainer_state.json"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    _fails(tmp_path, [path], "empty file", meta=META)


def test_header_only_and_ambiguous_loss(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("_step,eval/loss\n")
    _fails(tmp_path, [path], "a header and no rows", meta=META)
    path.write_text("_step,eval/pile/loss,eval/c4/loss\n1,3,3\n")
    _fails(tmp_path, [path], "logs 2 loss metrics .* choose one with --metric", meta=META)


def test_schema_1_store_gains_the_import_tables(tmp_path):
    """A store written before imports existed takes imported runs beside its sweeps."""
    store = tmp_path / "old.db"
    Store(store).close()
    with sqlite3.connect(store) as conn:  # make it what schema 1 wrote
        conn.execute("DROP TABLE imports")
        conn.execute("DROP TABLE metrics")
        conn.execute("PRAGMA user_version = 1")
    with Store(store, readonly=True) as db:
        assert db.schema_version == 1 and db.imports().empty
    src = write_panel(tmp_path / "p.csv", {"a": {1: 3.0, 2: 2.5}}, "eval/loss")
    (run,) = import_runs([src], store=store, meta=META).imported
    with Store(store, readonly=True) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert db.imports()["run_id"].tolist() == [run.run_id]
    assert row_count(store, "curves") == 2


def test_tensorboard_resumed_folders_and_dry_run(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    logs = tmp_path / "tb"
    for segment, steps in (("gpt-run-001", range(0, 60, 10)), ("gpt-run-002", range(40, 100, 10))):
        writer = SummaryWriter(str(logs / segment))
        for step in steps:
            writer.add_scalar("eval/loss", 5.0 - step / 100 + (segment == "gpt-run-002"), step)
        writer.close()
    store = tmp_path / "s.db"
    result = import_runs([logs], store=store, meta=META, dry_run=True)
    assert not store.exists()  # a dry run reads and checks, and writes nothing
    (run,) = result.runs
    assert run.segments == ("gpt-run-001", "gpt-run-002") and run.points == 10
    (job,) = result.stitched
    assert job["overlaps"] == ["2 points of gpt-run-001 (steps 40-50) replaced by gpt-run-002"]


def test_panel_against_tokens(tmp_path):
    src = write_panel(tmp_path / "p.csv", {"a": {2048: 3.0, 4096: 2.5}}, "loss", x="train/tokens")
    meta = {k: v for k, v in META.items() if k != "tokens_per_step"}  # the panel gives tokens
    import_runs([src], store=tmp_path / "s.db", meta=meta)
    assert curve_of(tmp_path / "s.db", "a")["tokens"].tolist() == [2048, 4096]
    other = write_panel(tmp_path / "q.csv", {"a": {1: 3.0}}, "loss", x="Wall Time")
    _fails(tmp_path, [other], "x axis is 'Wall Time'", meta=META)
