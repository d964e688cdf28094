"""The public surface: a few names, none shadowing a module, and one error family."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest

import scalinglab
from scalinglab.approaches import ApproachError
from scalinglab.errors import ScalingLabError
from scalinglab.fitting import FitError, FitWarning
from scalinglab.procedures import BacktestError, ProcedureError


def test_the_surface_is_small_and_every_name_resolves():
    assert 15 <= len(scalinglab.__all__) <= 22
    assert len(set(scalinglab.__all__)) == len(scalinglab.__all__)
    for name in scalinglab.__all__:
        assert getattr(scalinglab, name) is not None, name
    assert scalinglab.__version__ == importlib.import_module("scalinglab._version").__version__


def test_no_public_name_shadows_a_module():
    for name in scalinglab.__all__:
        assert importlib.util.find_spec(f"scalinglab.{name}") is None, name
    for package, names in (
        (scalinglab.fitting, scalinglab.fitting.__all__),
        (scalinglab.procedures, scalinglab.procedures.__all__),
    ):
        for name in names:
            assert importlib.util.find_spec(f"{package.__name__}.{name}") is None, name
    # The modules of old are gone: fit() and backtest() are functions, their code lives in
    # scalinglab.fitting and scalinglab.procedures.
    assert importlib.util.find_spec("scalinglab.fit") is None
    assert importlib.util.find_spec("scalinglab.backtest") is None
    assert callable(scalinglab.fit) and callable(scalinglab.backtest)


def test_errors_of_fitting_and_procedures_are_one_family():
    for error in (FitError, ProcedureError, BacktestError, ApproachError):
        assert issubclass(error, ScalingLabError), error
    assert issubclass(FitWarning, UserWarning)
    with pytest.raises(ProcedureError, match="auto") as caught:
        scalinglab.procedures.get_procedure("magic")
    assert caught.value.field == "procedure"


def test_the_report_is_loaded_only_when_asked_for():
    code = (
        "import sys, scalinglab\n"
        "assert 'matplotlib' not in sys.modules and 'scalinglab.report' not in sys.modules\n"
        "assert callable(scalinglab.build_report)\n"
        "assert 'scalinglab.report' in sys.modules\n"
        "try:\n"
        "    scalinglab.nothing_here\n"
        "except AttributeError as exc:\n"
        "    assert 'nothing_here' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
