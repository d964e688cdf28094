"""``sweep status`` and ``sweep export`` on damaged stores and on names full of brackets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from _main import one_line_error, run_main
from scalinglab.store import Store, StoreError
from scalinglab.sweep.spec import parse_spec
from test_store import fake_result, make_run


def _store(path: Path, *, sweep: str = "s1", error: str = "boom") -> Path:
    spec = parse_spec(
        f"[sweep]\nname = {json.dumps(sweep)}\n"
        '[design]\nkind = "grid"\nparams = [1e5]\ntokens = [1e6]\n'
    )
    runs = [make_run(layers, 4096) for layers in (1, 2, 3)]
    with Store(path) as s:
        s.add_sweep(spec, runs)
        for run in runs[:2]:
            s.record_result(run, fake_result(run))
        s.record_failure(runs[2].key, error, final=True)
    return path


def test_user_text_with_markup_prints_as_written(tmp_path: Path) -> None:
    # Root cause 1: a sweep name and a run's error holding "[/x]" crashed rich (MarkupError).
    store = _store(tmp_path / "m[v2].db", sweep="[/x] sweep", error="bad [/x] [bold]value")
    code, out, err = run_main("sweep", "status", "--store", store)
    assert code == 0, err
    assert "[/x] sweep" in out and "bad [/x] [bold]value" in out and "m[v2].db" in out


def _damaged(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.db"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "no-schema":
        sqlite3.connect(path).execute("PRAGMA user_version = 0").connection.close()
        path.write_bytes(path.read_bytes() or b"")
        with sqlite3.connect(path) as conn:  # a SQLite file with our id but no tables
            conn.execute("PRAGMA application_id = 0")
        if path.stat().st_size == 0:
            conn = sqlite3.connect(path)
            conn.execute("CREATE TABLE t (x)")
            conn.execute("DROP TABLE t")
            conn.close()
    elif kind == "corrupt":
        good = _store(tmp_path / "good.db")
        data = bytearray(good.read_bytes())
        rng = np.random.default_rng(0)
        for page in range(1, len(data) // 4096):  # every page after the header, mid-page
            data[page * 4096 + 8 : page * 4096 + 2048] = rng.bytes(2040)
        path.write_bytes(bytes(data))
    elif kind == "text":
        path.write_text("not a database")
    return path


@pytest.mark.parametrize("kind", ["empty", "no-schema", "corrupt", "text"])
@pytest.mark.parametrize("command", ["status", "export"])
def test_damaged_stores_give_one_line(tmp_path: Path, kind: str, command: str) -> None:
    # Root cause 4: these reached pandas (a traceback) in status and export.
    path = _damaged(tmp_path, kind)
    line = one_line_error(run_main("sweep", command, "--store", path))
    assert line.startswith("error: --store:") and str(path) in line
    with pytest.raises(StoreError):
        Store(path, readonly=True)
