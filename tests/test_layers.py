"""The layer contract of pyproject.toml holds on the package, and catches an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with ``root``'s pyproject.toml, on the package under ``root/src``."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_package_keeps_its_layers():
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("counting.py", "import scalinglab.runs"),  # the bottom reaching one layer up
        ("store/database.py", "from scalinglab.sweep import spec"),  # the store reaching the sweep
        ("report/html.py", "import scalinglab.demo"),  # report reaching the demo above it
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        REPO / "src" / "scalinglab",
        tmp_path / "src" / "scalinglab",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    target = tmp_path / "src" / "scalinglab" / module
    target.write_text(target.read_text() + f"\n{upward}\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and upward.split()[1].split(".")[-1] in done.stdout
