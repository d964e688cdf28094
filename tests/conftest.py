"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data in ``../shared/data`` beside the repository (skip when absent)."""
    path = REPO.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep every cache a test writes (corpora, CPU probe) out of the user's home."""
    cache = tmp_path_factory.getbasetemp() / "scalinglab-cache"
    monkeypatch.setenv("SCALINGLAB_CACHE", str(cache))
