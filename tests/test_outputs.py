"""The one rule for outputs: checked before any work, never an input or a store, atomic."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pandas as pd
import pytest

from _main import one_line_error, run_main
from scalinglab.outputs import OutputError, atomic_path, check_output, write_atomic


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def runs_csv(tmp_path: Path) -> Path:
    """Twelve runs of a known Chinchilla-form law (E 1.7, A 400, B 410, 0.34, 0.28)."""
    rows = [
        (n, d, 1.7 + 400 / n**0.34 + 410 / d**0.28)
        for n in (1e7, 3e7, 1e8, 3e8)
        for d in (2e8, 1e9, 5e9)
    ]
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows, columns=["params", "tokens", "loss"]).to_csv(path, index=False)
    return path


def test_a_folder_a_fifo_and_a_file_as_folder_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for path, words in (
        (tmp_path, "is a folder"),
        (fifo, "not a regular file"),
        (plain / "x.csv", "is a file, not a folder"),
    ):
        with pytest.raises(OutputError, match=words) as caught:
            check_output(path, field="out")
        assert caught.value.field == "out"


def test_an_input_is_refused_also_through_a_link(tmp_path: Path) -> None:
    data = tmp_path / "runs.csv"
    data.write_text("params,tokens,loss\n")
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    for out in (data, link, tmp_path / "." / "runs.csv"):
        with pytest.raises(OutputError, match="one of this command's inputs"):
            check_output(out, field="out", inputs=[data])


def test_any_sqlite_file_is_refused_as_an_output(tmp_path: Path) -> None:
    db = tmp_path / "results.csv"  # a store under any name
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(OutputError, match="SQLite"):
        check_output(db, field="out")


def test_an_unwritable_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    # chmod does not stop root, so the probe write itself is made to fail as it would.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("scalinglab.outputs.tempfile.mkstemp", denied)
    with pytest.raises(OutputError, match=r"cannot write in .*Permission denied"):
        check_output(tmp_path / "x.csv", field="csv")


def test_missing_folders_and_existing_outputs_are_allowed(tmp_path: Path) -> None:
    old = tmp_path / "fit.json"
    old.write_text("old")
    assert check_output(old, field="out") == old
    deep = tmp_path / "a" / "b" / "x.csv"
    check_output(deep, field="out")
    write_atomic(deep, "new", field="out")
    assert deep.read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("the old report")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("scalinglab.outputs.os.replace", full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_atomic(target, "x" * 1000, field="out")
    assert target.read_text() == "the old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_atomic_outputs_get_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "fig.svg"
    with atomic_path(target, field="figure") as temporary:
        assert temporary.suffix == ".svg" and temporary.parent == tmp_path
        temporary.write_text("<svg/>")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_fit_out_onto_its_own_runs_is_refused_byte_identical(runs_csv: Path) -> None:
    before = _sha(runs_csv)
    line = one_line_error(run_main("fit", runs_csv, "--out", runs_csv))
    assert line.startswith("error: --out:") and "inputs" in line
    assert _sha(runs_csv) == before


def test_sweep_export_onto_its_store_is_refused_byte_identical(tmp_path: Path) -> None:
    from scalinglab.store import Store
    from test_store import SPEC, fake_result, make_run

    store = tmp_path / "s.db"
    run = make_run(1, 4096)
    with Store(store) as s:
        s.add_sweep(SPEC, [run])
        s.record_result(run, fake_result(run))
    before = _sha(store)
    line = one_line_error(run_main("sweep", "export", "--store", store, "--out", store))
    assert line.startswith("error: --out:") and "inputs" in line
    assert _sha(store) == before


@pytest.mark.parametrize("option", ["--out", "--csv"])
def test_outputs_checked_before_the_work(runs_csv: Path, tmp_path: Path, option, monkeypatch):
    # A folder where the output file should be: refused before any fit or plan is made.
    import scalinglab.fitting.engine as engine

    def no_work(*args, **kwargs):
        raise AssertionError("the work ran before the output was checked")

    monkeypatch.setattr(engine, "fit", no_work)
    if option == "--out":
        line = one_line_error(run_main("fit", runs_csv, "--out", tmp_path))
    else:
        line = one_line_error(
            run_main("plan", "--fit", runs_csv, "--budget", "1e21", "--csv", tmp_path)
        )
    assert line.startswith(f"error: {option}:") and "is a folder" in line


def test_report_into_an_unwritable_folder_fails_before_the_work(runs_csv, tmp_path, monkeypatch):
    import scalinglab.report.build as build

    def no_work(*args, **kwargs):
        raise AssertionError("the report was built before its output was checked")

    monkeypatch.setattr(build, "_fits", no_work)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    if os.access(locked, os.W_OK):  # root: a 0555 folder is writable; /proc is not
        locked = Path("/proc")
    try:
        line = one_line_error(run_main("report", "--runs", runs_csv, "--out", locked / "r.html"))
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert line.startswith("error: --out:") and "cannot write in" in line


def test_suggest_out_onto_its_runs_is_refused_byte_identical(runs_csv: Path) -> None:
    before = _sha(runs_csv)
    args = ["sweep", "suggest", runs_csv, "--budget", "1e18", "--for-budget", "1e20"]
    line = one_line_error(run_main(*args, "--out", runs_csv))
    assert line.startswith("error: --out:") and "inputs" in line
    assert _sha(runs_csv) == before
