"""A hand-edited fit.json is checked key by key: one line naming the file and the key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from _main import one_line_error, run_main
from scalinglab import load_fit
from scalinglab.fitting import Fit, FitError

PARAMS = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al.


@pytest.fixture
def fit_json(tmp_path: Path) -> Path:
    path = tmp_path / "fit.json"
    Fit.from_params("chinchilla", PARAMS).save(path)
    d = json.loads(path.read_text())
    d["domain"] = {
        "params": [7e7, 1.6e10],
        "tokens": [5e9, 5e11],
        "flops": [2e18, 3e22],
        "tokens_per_param": [1.0, 100.0],
    }
    d["bootstrap_params"] = [[1.7, 400.0, 400.0, 0.33, 0.27], [1.68, 410.0, 420.0, 0.35, 0.29]]
    path.write_text(json.dumps(d))
    return path


def _edit(path: Path, change: Callable[[dict], None]) -> Path:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))
    return path


CASES = {
    "string domain": (lambda d: d.__setitem__("domain", "wide"), "domain"),
    "list params": (lambda d: d.__setitem__("params", [1, 2, 3]), "params"),
    "one-element range": (lambda d: d["domain"].__setitem__("params", [1e8]), "domain.params"),
    "reversed bounds": (
        lambda d: d["domain"].__setitem__("params", [1.6e10, 7e7]),
        "domain.params",
    ),
    "bootstrap rows of wrong width": (
        lambda d: d.__setitem__("bootstrap_params", [[1, 2], [3, 4]]),
        "bootstrap_params",
    ),
    "infinite bound": (lambda d: d["domain"].__setitem__("flops", [1e18, 1e400]), "domain.flops"),
    "string parameter": (lambda d: d["params"].__setitem__("alpha", "x"), "params.alpha"),
    "missing parameter": (lambda d: d["params"].pop("beta"), "params"),
    "negative scale": (lambda d: d["params"].__setitem__("A", -5.0), "A"),
    "ci as a list": (lambda d: d.__setitem__("ci", [1, 2]), "ci"),
    "n_runs as text": (lambda d: d.__setitem__("n_runs", "many"), "n_runs"),
    "law as null": (lambda d: d.__setitem__("law", None), "law"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_key_is_named_with_the_file(fit_json: Path, case: str) -> None:
    change, key = CASES[case]
    path = _edit(fit_json, change)
    with pytest.raises(FitError) as caught:
        load_fit(path)
    assert str(caught.value).startswith(f"{path}: ") and key in str(caught.value)


@pytest.mark.parametrize("command", ["plan", "compare"])
def test_plan_and_compare_say_it_in_one_line(fit_json: Path, tmp_path: Path, command: str):
    # Root cause 5: these were tracebacks (AttributeError, ValueError) or plans over [1, 1.6e20].
    good = tmp_path / "good.json"
    good.write_bytes(fit_json.read_bytes())
    bad = _edit(fit_json, lambda d: d["domain"].__setitem__("params", [1.6e10, 7e7]))
    args = (
        ["plan", "--fit", bad, "--budget", "1e21"]
        if command == "plan"
        else ["compare", "--fit", bad, "--fit", good, "--at", "1e21"]
    )
    line = one_line_error(run_main(*args))
    assert "--fit" in line and str(bad) in line and "domain.params" in line


def test_a_binary_or_folder_fit_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "bin.json"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(FitError, match=r"bin\.json: not a fit file"):
        load_fit(binary)
    with pytest.raises(FitError, match="no such fit file"):
        load_fit(tmp_path)


@pytest.mark.parametrize("bad", [{"law": "chinchilla"}, 3.5, None])
def test_load_fit_of_a_non_path_names_the_argument(bad) -> None:
    with pytest.raises(FitError, match="path must be a file path") as caught:
        load_fit(bad)
    assert caught.value.field == "path"


def test_the_saved_fit_round_trips(fit_json: Path) -> None:
    fit = load_fit(fit_json)
    assert fit.params == PARAMS and fit.bootstrap_params.shape == (2, 5)
    assert fit.domain.params == (7e7, 1.6e10)
