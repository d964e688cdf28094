"""A fitting-only install: no torch imported by `import scalinglab`, and without torch the fit
and plan commands work while the training commands say in one line what to install."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scalinglab._optional import MissingDependencyError, as_missing_dependency, require
from scalinglab.errors import ScalingLabError

# Run first in the child: every later `import torch` (or tokenizers, or ray) fails as it does
# where the package is not installed (None in sys.modules raises ModuleNotFoundError).
_BLOCK = "import sys\nfor _m in ('torch', 'tokenizers', 'ray'):\n    sys.modules[_m] = None\n"
_CLI = "from scalinglab.cli import main\nsys.argv = ['scalinglab', *sys.argv[1:]]\nmain()\n"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )


def _cli(*args: str, block: bool = True) -> subprocess.CompletedProcess[str]:
    return _python((_BLOCK if block else "import sys\n") + _CLI, *args)


def test_import_scalinglab_imports_neither_torch_nor_matplotlib():
    done = _python(
        "import scalinglab, scalinglab.train, sys\n"
        "from scalinglab.train import TrainConfig\n"
        "from scalinglab.sweep import plan_sweep\n"
        "heavy = ('torch', 'matplotlib', 'tokenizers', 'ray')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    assert done.returncode == 0, done.stderr


def test_fit_and_plan_run_without_torch_with_the_same_parameters(shared_data, tmp_path):
    csv = str(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv")
    fit_json = str(tmp_path / "fit.json")
    args = ("fit", csv, "--drop-top-loss", "5", "--json")
    blocked, full = _cli(*args, "--out", fit_json), _cli(*args, block=False)
    assert blocked.returncode == 0, blocked.stderr
    assert full.returncode == 0, full.stderr
    params = json.loads(blocked.stdout)["params"]
    assert params == json.loads(full.stdout)["params"]
    assert set(params) == {"E", "A", "B", "alpha", "beta"}
    planned = _cli("plan", "--fit", fit_json, "--budget", "5.76e23", "--json")
    assert planned.returncode == 0, planned.stderr
    assert "params" in planned.stdout and "tokens" in planned.stdout


def test_a_sweep_design_needs_no_torch():
    done = _python(
        _BLOCK + "from scalinglab.demo import demo_plan\n"
        "plan = demo_plan()\n"
        "assert plan.runs and 'torch' not in [m for m, v in sys.modules.items() if v]\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("train", "--params", "1e5", "--tokens", "1e5"),
        ("sweep", "run", "examples/demo.toml", "--store", "{tmp}/s.db"),
        ("demo", "--store", "{tmp}/d.db", "--out", "{tmp}/d.html"),
    ],
)
def test_training_without_torch_says_what_to_install(args, tmp_path):
    done = _cli(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, done.stderr
    assert "torch" in errors[0] and "pip install 'scalinglab[train]'" in errors[0]
    assert "Traceback" not in done.stderr


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'scalinglab\[ray\]'") as err:
        require("ray", "the ray executor")
    assert isinstance(err.value, ScalingLabError) and isinstance(err.value, ImportError)
    assert err.value.field == "ray"
    assert require("json").dumps([]) == "[]"


def test_only_optional_modules_convert():
    torch_missing = ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn")
    converted = as_missing_dependency(torch_missing, "training")
    assert converted is not None and "training needs torch" in str(converted)
    assert as_missing_dependency(ModuleNotFoundError("x", name="numpy")) is None
    assert as_missing_dependency(ValueError("torch")) is None
