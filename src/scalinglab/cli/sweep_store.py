"""``scalinglab sweep status`` and ``scalinglab sweep export``: what a store holds, read only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scalinglab.cli._common import console, err_console, esc, fail, fail_with, output, print_json
from scalinglab.errors import ScalingLabError
from scalinglab.outputs import atomic_path

__all__ = ["DEFAULT_STORE", "export_command", "status_command"]

DEFAULT_STORE = Path("scalinglab.db")


def _open_readonly(store_path: Path) -> Any:
    from scalinglab.store import Store, StoreError

    try:
        return Store(store_path, readonly=True)
    except StoreError as exc:
        fail(f"--store: {exc}")


def status_command(
    store_path: Annotated[Path, typer.Option("--store", help="The store.")] = DEFAULT_STORE,
    sweep: str | None = typer.Option(None, "--sweep", help="Only this sweep."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show each sweep's runs by status, and the errors of failed runs.

    Example: scalinglab sweep status --store scalinglab.db
    """
    with _open_readonly(store_path) as store:
        sweeps = store.sweeps()
        if sweep is not None and sweep not in set(sweeps["name"]):
            fail(f"--sweep: no sweep named {sweep!r} in {store_path}")
        if sweep is not None:
            sweeps = sweeps[sweeps["name"] == sweep]
        runs = store.runs(sweep)
    failed = runs[runs["status"] == "failed"]
    if as_json:
        print_json(
            {
                "store": str(store_path),
                "sweeps": sweeps.fillna(0).to_dict(orient="records"),
                "failed": [
                    {
                        "run_id": r.run_id,
                        "params": r.params_total,
                        "tokens": r.tokens,
                        "attempts": r.attempts,
                        "error": r.error,
                    }
                    for r in failed.itertuples()
                ],
            }
        )
        return
    table = Table(title=f"Sweeps in {esc(store_path)}")
    for name in ("sweep", "design", "points", "finished", "running", "planned", "failed"):
        table.add_column(name, justify="left" if name in ("sweep", "design") else "right")
    for row in sweeps.fillna(0).itertuples():
        table.add_row(
            esc(row.name),
            esc(row.design),
            *(
                str(int(getattr(row, c)))
                for c in ("points", "finished", "running", "planned", "failed")
            ),
        )
    console.print(table)
    if len(failed):
        ft = Table(title="Failed runs")
        for name in ("run_id", "N total", "D", "attempts", "error (last line)"):
            ft.add_column(name)
        for r in failed.itertuples():
            last = (r.error or "").strip().splitlines()[-1:] or [""]
            ft.add_row(
                esc(r.run_id), f"{r.params_total:,}", f"{r.tokens:,}", str(r.attempts), esc(last[0])
            )
        console.print(ft)


def export_command(
    fmt: str = typer.Option("csv", "--format", "-f", help="csv, parquet or jsonl."),
    store_path: Annotated[Path, typer.Option("--store", help="The store.")] = DEFAULT_STORE,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (default: stdout; parquet needs a file)."),
    ] = None,
    sweep: str | None = typer.Option(None, "--sweep", help="Only this sweep."),
    what: str = typer.Option(
        "points",
        "--what",
        help="points (one row per finished point, as `scalinglab fit` reads them), "
        "runs (every run with all its columns) or curves (every loss curve).",
    ),
) -> None:
    """Export a store's points, runs or curves as CSV, Parquet or JSON lines.

    Example: scalinglab sweep export --format parquet --out runs.parquet
    """
    from scalinglab.store import StoreError

    if fmt not in ("csv", "parquet", "jsonl"):
        fail(f"--format must be csv, parquet or jsonl, got {fmt!r}")
    if what not in ("points", "runs", "curves"):
        fail(f"--what must be points, runs or curves, got {what!r}")
    if fmt == "parquet" and out is None:
        fail("--out: parquet is binary; give a file to write it to")
    output(out, "out", inputs=[store_path])
    with _open_readonly(store_path) as store:
        try:
            if what == "points":
                frame = store.points(sweep)
            elif what == "runs":
                frame = store.runs(sweep)
            else:
                frame = store.curves(sweep)
        except StoreError as exc:
            fail(f"--sweep: {exc}")
    frame.attrs = {}
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "jsonl":
        text = frame.to_json(orient="records", lines=True)
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            with atomic_path(out, field="out") as temporary:
                if fmt == "parquet":
                    frame.to_parquet(temporary, index=False)
                else:
                    temporary.write_text(text, encoding="utf-8")
        except ScalingLabError as exc:
            fail_with(exc)
    if out is not None:
        err_console.print(f"wrote {len(frame)} rows to {esc(out)}", highlight=False)
