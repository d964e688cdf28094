"""Seconds and peak memory to import 10^6 logged points, against plain pandas reading the same
file, measured in one run.

The input is a long table written here: ``--runs`` runs of equal length, one row per logged
step with a run column, the step, a validation loss and a throughput column that is not
imported (10^6 loss points by default), as CSV and as Parquet. Each measurement runs in a fresh
Python process so that one's memory does not inflate the next:

- anchor: ``pandas.read_csv`` (``pandas.read_parquet``) of the whole file, nothing else;
- ``scalinglab import``: ``import_runs`` into a new store: hashing the source, reading the
  needed columns with pyarrow, splitting runs, writing every point to SQLite in one
  transaction;
- SQLite floor: the same number of rows inserted straight into an empty store's ``curves``
  table (one ``executemany`` per run, one transaction), the part of an import no reader can
  save.

Peak memory is the growth of the process's peak resident set (``VmHWM``) over its size after
the imports, which counts pyarrow's buffers as well as numpy's, Python's and SQLite's.

    .venv/bin/python benchmarks/import_speed.py              # 10^6 points
    .venv/bin/python benchmarks/import_speed.py --points 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mib() -> float:
    # VmHWM (peak resident set) starts afresh at exec; ru_maxrss would carry the parent's.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB


def child(what: str, path: str, store: str) -> None:
    """Run one measurement and print it as JSON (called in a fresh process)."""
    meta = {"param_basis": "total", "flops_method": "6nd", "params": 10**8}
    if what == "sqlite":
        import hashlib
        import sqlite3

        from scalinglab.store import Store

        Store(store).close()  # the schema
        runs, steps = (int(v) for v in path.split("x"))
        conn = sqlite3.connect(store, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")
        base, cpu = _peak_mib(), _cpu_s()
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for r in range(runs):
            key = hashlib.sha256(str(r).encode()).hexdigest()
            tokens = (np.arange(1, steps + 1) * 2**20).tolist()
            values = np.linspace(4, 2, steps).tolist()
            conn.executemany(
                "INSERT INTO curves (key, tokens, flops_6nd, train_loss, val_loss, lr) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                zip(
                    [key] * steps,
                    tokens,
                    values,
                    [None] * steps,
                    values,
                    [None] * steps,
                    strict=True,
                ),
            )
        conn.execute("COMMIT")
        seconds = time.perf_counter() - start
        rows = runs * steps
    elif what == "anchor":
        base, cpu = _peak_mib(), _cpu_s()
        start = time.perf_counter()
        frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
        seconds = time.perf_counter() - start
        rows = len(frame)
    else:
        from scalinglab.importers import import_runs

        base, cpu = _peak_mib(), _cpu_s()
        start = time.perf_counter()
        result = import_runs([path], store=store, meta=meta, flags={"tokens_per_step": 2**20})
        seconds = time.perf_counter() - start
        rows = result.points
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": _cpu_s() - cpu,
                "peak_mib": _peak_mib() - base,
                "rows": rows,
            }
        )
    )


def write_table(folder: Path, points: int, runs: int) -> tuple[Path, Path]:
    """The benchmark's long table, as CSV and Parquet."""
    rng = np.random.default_rng(0)
    steps = points // runs
    step = np.tile(np.arange(1, steps + 1), runs)
    run = np.repeat([f"run-{i:04d}" for i in range(runs)], steps)
    size = np.repeat(np.geomspace(1e7, 1e9, runs), steps)
    loss = 1.8 + 400 / size**0.34 + 1200 / (step * 2.0**20) ** 0.28
    frame = pd.DataFrame(
        {
            "run": run,
            "_step": step,
            "eval/loss": loss + rng.normal(0, 1e-3, len(step)),
            "throughput": rng.uniform(1e5, 2e5, len(step)),
        }
    )
    csv_path, parquet_path = folder / "long.csv", folder / "long.parquet"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path)
    return csv_path, parquet_path


def measure(what: str, path: Path, store: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", what, str(path), str(store)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--child", nargs=3, metavar=("WHAT", "PATH", "STORE"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path, parquet_path = write_table(folder, args.points, args.runs)
        mib = [p.stat().st_size / 2**20 for p in (csv_path, parquet_path)]
        print(
            f"{args.points:,} points in {args.runs} runs; "
            f"CSV {mib[0]:.1f} MiB, Parquet {mib[1]:.1f} MiB"
        )
        print(
            f"{'file':8} {'what':20} {'wall s':>7} {'CPU s':>7} {'peak MiB':>9} "
            f"{'wall ratio':>11} {'CPU ratio':>10}"
        )

        def row(label: str, what: str, got: dict, anchor: dict) -> None:
            print(
                f"{label:8} {what:20} {got['seconds']:7.2f} {got['cpu_s']:7.2f} "
                f"{got['peak_mib']:9.0f} {got['seconds'] / anchor['seconds']:11.2f} "
                f"{got['cpu_s'] / anchor['cpu_s']:10.2f}"
            )

        imported: dict[str, dict] = {}
        for label, path, anchor_name in (
            ("CSV", csv_path, "pandas.read_csv"),
            ("Parquet", parquet_path, "pandas.read_parquet"),
        ):
            anchor = measure("anchor", path, folder / "unused.db")
            got = measure("import", path, folder / f"{label}.db")
            assert got["rows"] == args.points, got
            imported[label] = got
            row(label, anchor_name, anchor, anchor)
            row(label, "scalinglab import", got, anchor)
        floor = measure("sqlite", Path(f"{args.runs}x{args.points // args.runs}"), folder / "f.db")
        print("ratios to the SQLite floor (the same rows inserted bare):")
        row("-", "SQLite floor", floor, floor)
        for label, got in imported.items():
            row(label, "scalinglab import", got, floor)


if __name__ == "__main__":
    main()
