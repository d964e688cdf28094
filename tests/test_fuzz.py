"""Generated garbage at every reader and every command: each call succeeds or raises the
documented error (a ScalingLabError; on the command line exit 2 and one line on stderr),
never anything else.

Examples per entry point are in ``EXAMPLES``; they keep this file well under a minute on an
idle machine of two cores. The commands that train (``train``, ``sweep run``, ``demo``) are
left out: an accepted example would train a model.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _main import run_main
from scalinglab import load_fit, load_runs
from scalinglab.cli import app
from scalinglab.errors import ScalingLabError
from scalinglab.fitting import Fit
from scalinglab.store import Store
from scalinglab.sweep.spec import load_spec, parse_spec
from test_store import SPEC, fake_result, make_run

EXAMPLES = {
    "load_runs": 60,
    "load_fit": 60,
    "spec": 60,
    "store": 25,
    "compute": 40,
    "fit": 12,
    "plan": 30,
    "compare": 15,
    "backtest": 6,
    "report": 4,
    "sweep plan": 25,
    "sweep status": 15,
    "sweep export": 15,
    "import": 15,
    "sweep suggest": 10,
}
PARAMS = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al.


def _settings(entry: str) -> settings:
    return settings(
        max_examples=EXAMPLES[entry],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good inputs, bad inputs, and places to write."""
    root = tmp_path_factory.mktemp("fuzz")
    runs = root / "runs.csv"
    rows = [
        (n, d, 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28)
        for n in (1e7, 1e8, 1e9)
        for d in (1e9, 1e10, 1e11)
    ]
    pd.DataFrame(rows, columns=["params", "tokens", "loss"]).to_csv(runs, index=False)
    fit = root / "fit.json"
    Fit.from_params("chinchilla", PARAMS).save(fit)
    store = root / "s.db"
    run = make_run(1, 4096)
    with Store(store) as s:
        s.add_sweep(SPEC, [run])
        s.record_result(run, fake_result(run))
    spec = root / "grid.toml"
    spec.write_text('[design]\nkind = "grid"\nparams = [2e4, 5e4]\ntokens = [1e5, 2e5]\n')
    binary = root / "binary.bin"
    binary.write_bytes(bytes(range(256)))
    (root / "folder").mkdir()
    return {
        "runs": runs,
        "fit": fit,
        "store": store,
        "spec": spec,
        "binary": binary,
        "folder": root / "folder",
        "missing": root / "missing.csv",
        "new": root / "out" / "new.csv",
        "proc": Path("/proc/scalinglab-fuzz.csv"),
    }


# --- readers ------------------------------------------------------------------------------

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.text(alphabet=string.printable + "[]/é∞", max_size=8),
    st.none(),
    st.booleans(),
)
columns = st.sampled_from(["params", "tokens", "flops", "loss", "N", "D", "C", "group", "x", ""])


@_settings("load_runs")
@given(
    table=st.dictionaries(columns, st.lists(cells, min_size=1, max_size=5), max_size=5),
    suffix=st.sampled_from([".csv", ".json", ".jsonl", ".tsv", ".parquet", ".db", ".xyz"]),
    as_file=st.booleans(),
)
def test_load_runs(tmp_path: Path, table: dict, suffix: str, as_file: bool) -> None:
    n = min((len(v) for v in table.values()), default=0)
    frame = pd.DataFrame({k: v[:n] for k, v in table.items()})
    source: Any = frame
    if as_file:
        source = tmp_path / f"t{suffix}"
        try:
            if suffix == ".parquet":
                frame.astype(str).to_parquet(source)
            elif suffix in (".json", ".jsonl"):
                frame.to_json(source, orient="records", lines=suffix == ".jsonl")
            else:
                frame.to_csv(source, index=False, sep="\t" if suffix == ".tsv" else ",")
        except (ValueError, TypeError, OverflowError):
            return  # pandas cannot write this frame: nothing to read
    try:
        runs = load_runs(source)
    except ScalingLabError:
        return
    numbers = runs.frame[["params", "tokens", "flops", "loss"]].to_numpy(dtype=float)
    assert np.isfinite(numbers).all() and (numbers > 0).all()
    assert np.isfinite(6.0 * runs.frame["params"] * runs.frame["tokens"]).all()


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(), st.text(max_size=5)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
FIT_KEYS = [
    "law",
    "law_options",
    "params",
    "domain",
    "ci",
    "ci_level",
    "bootstrap_params",
    "n_runs",
    "optima",
    "warnings",
    "holdout",
    "diagnostics",
    "objective",
    "loss",
]


@_settings("load_fit")
@given(
    changes=st.dictionaries(st.sampled_from(FIT_KEYS), json_values, max_size=3),
    raw=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_load_fit(files: dict[str, Path], tmp_path: Path, changes: dict, raw: bytes | None) -> None:
    path = tmp_path / "fit.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        d = json.loads(files["fit"].read_text())
        d.update(changes)
        path.write_text(json.dumps(d))
    try:
        fit = load_fit(path)
    except ScalingLabError as exc:
        assert str(path) in str(exc)
        return
    assert all(np.isfinite(v) for v in fit.params.values())


spec_tables = st.dictionaries(
    st.sampled_from(["sweep", "data", "model", "train", "budget", "execution", "design", "other"]),
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "kind",
                "params",
                "tokens",
                "flops",
                "levels",
                "corpus",
                "lr",
                "batch_size",
                "sizes_per_level",
                "flops_min",
                "flops_max",
                "vocab_size",
                "workers",
                "x",
            ]
        ),
        json_values,
        max_size=4,
    ),
    max_size=4,
)


@_settings("spec")
@given(tables=spec_tables, raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_spec_loader(tmp_path: Path, tables: dict, raw: bytes | None) -> None:
    try:
        if raw is None:
            parse_spec(tables)
        else:
            path = tmp_path / "spec.toml"
            path.write_bytes(raw)
            load_spec(path)
    except ScalingLabError:
        pass


@_settings("store")
@given(
    where=st.integers(min_value=0, max_value=200_000),
    junk=st.binary(min_size=1, max_size=4096),
    truncate=st.booleans(),
)
def test_store_reader(
    files: dict[str, Path], tmp_path: Path, where: int, junk: bytes, truncate: bool
) -> None:
    data = bytearray(files["store"].read_bytes())
    where %= len(data)
    data[where : where + len(junk)] = junk
    path = tmp_path / "damaged.db"
    path.write_bytes(bytes(data[:where] if truncate else data))
    try:
        with Store(path, readonly=True) as store:
            store.sweeps()
            store.runs()
            store.points()
            store.curves()
    except ScalingLabError:
        pass


# --- commands -----------------------------------------------------------------------------

OUTPUT_OPTIONS = {"out", "csv", "figure", "figures", "checkpoint_dir"}
numbers = st.one_of(
    st.sampled_from(
        ["nan", "inf", "-inf", "-1", "0", "1e308", "1e-308", "0.5", "1e21", "abc", "[/x]", ""]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
whole = st.one_of(st.sampled_from(["-1", "0", "1", "2", "3", "1.5", "x", "1e3"]))
text = st.one_of(
    st.sampled_from(
        [
            "chinchilla",
            "power",
            "h100-sxm",
            "[/gpu]",
            "[bold]x",
            "flops",
            "pf-days",
            "1e21:1e23:3",
            "params=1e9,tokens=2e10",
            "",
            "=",
            "a=b",
        ]
    ),
    st.text(alphabet=string.printable + "[]", max_size=10),
)


def _paths(files: dict[str, Path]) -> st.SearchStrategy[str]:
    return st.sampled_from([str(p) for p in files.values()])


def _value(files: dict[str, Path], param: Any) -> st.SearchStrategy[str]:
    kind = str(param.type_descriptor.annotation)
    if "Path" in kind:
        return _paths(files)
    if "float" in kind:
        return numbers
    if "int" in kind:
        return whole
    return st.one_of(text, _paths(files))


def _command(path: str) -> Any:
    command = typer.main.get_command(app)
    for part in path.split():
        command = command.commands[part]
    return command


def _arguments(files: dict[str, Path], path: str) -> st.SearchStrategy[tuple[list[str], set]]:
    params = [p for p in _command(path).params if p.name not in ("help", "probe")]
    positional = [p for p in params if p.param_type_name == "argument"]
    options = [p for p in params if p.param_type_name == "option"]

    @st.composite
    def build(draw: Any) -> tuple[list[str], set]:
        # --no-probe: the throughput probe times real training steps (work, not input).
        args, inputs = path.split() + (["--no-probe"] if path == "sweep plan" else []), set()
        for p in positional:
            args.append(draw(_value(files, p)))
            inputs.add(args[-1])
        for p in draw(st.lists(st.sampled_from(options), max_size=5)):
            args.append(max(p.opts, key=len))
            if not p.is_flag:
                args.append(draw(_value(files, p)))
                # import writes into its --store: an output there, an input elsewhere.
                if p.name not in OUTPUT_OPTIONS and (path, p.name) != ("import", "store"):
                    inputs.add(args[-1])
        return args, inputs

    return build()


def _check(args: list[str]) -> None:
    code, _, err = run_main(*args)
    lines = [line for line in err.splitlines() if line.strip() and line.startswith("error:")]
    assert code in (0, 2), f"{args}: exit {code}, {err!r}"
    if code == 2:
        assert len([x for x in err.splitlines() if x.strip()]) == 1 and len(lines) == 1, (
            f"{args}: {err!r}"
        )


def _fuzz(entry: str) -> Any:
    def test(files: dict[str, Path], data: st.DataObject) -> None:
        args, inputs = data.draw(_arguments(files, entry))
        pristine = {p: p.read_bytes() for p in files.values() if p.is_file()}
        cwd = os.getcwd()
        os.chdir(files["folder"])
        try:
            _check(args)
            # No input is ever overwritten (an output may replace another fixture: restored).
            for path, content in pristine.items():
                if str(path) in inputs:
                    assert path.read_bytes() == content, f"{args}: {path} changed"
        finally:
            os.chdir(cwd)
            for path, content in pristine.items():
                if not path.is_file() or path.read_bytes() != content:
                    path.write_bytes(content)

    return _settings(entry)(given(data=st.data())(test))


test_cli_compute = _fuzz("compute")
test_cli_fit = _fuzz("fit")
test_cli_plan = _fuzz("plan")
test_cli_compare = _fuzz("compare")
test_cli_backtest = _fuzz("backtest")
test_cli_report = _fuzz("report")
test_cli_sweep_plan = _fuzz("sweep plan")
test_cli_sweep_status = _fuzz("sweep status")
test_cli_sweep_export = _fuzz("sweep export")
test_cli_import = _fuzz("import")
test_cli_sweep_suggest = _fuzz("sweep suggest")
