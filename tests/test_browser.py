"""The report in a real browser: headless Chromium opens it with no console errors, runs its
script to the end, and paints a page that is not blank.

Chromium is Debian's package, installed by ``scripts/ensure-chromium.sh`` (``make test`` runs
it). Without it the test skips, except in CI (``CI=true``) where a skipped browser test would
hide a broken report, so it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from scalinglab.report import build_report
from scalinglab.runs import load_runs

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_S = 120


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not found: run `sh scripts/ensure-chromium.sh` (as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def report_page(tmp_path_factory, shared_data) -> Path:
    _need_chromium()
    out = tmp_path_factory.mktemp("browser") / "report.html"
    runs = load_runs(shared_data / "chinchilla_epoch" / "chinchilla_epoch_nd.csv", drop_top_loss=5)
    # A bootstrap, a held-out check and a plan: every figure and table the report can have.
    build_report(runs, out, bootstrap=16, commands=("scalinglab report --runs x.csv",))
    return out


def test_report_opens_without_console_errors_and_is_not_blank(report_page, tmp_path):
    shot = tmp_path / "shot.png"
    done = _chromium(
        report_page,
        tmp_path / "profile-shot",
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Chromium logs every console message, uncaught exception and CSP refusal as CONSOLE lines;
    # the report writes none.
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, "\n".join(console)
    assert not re.search(r"Uncaught|Refused to", done.stderr), done.stderr[-2000:]

    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2000, 1280)
    rgb = image[..., :3]
    assert float(np.std(rgb)) > 0.05, "the screenshot is (nearly) one colour"
    inked = np.mean(np.any(rgb < 0.9, axis=-1))
    assert inked > 0.02, f"only {inked:.1%} of the screenshot is drawn on"


def test_report_script_runs_and_every_figure_is_in_the_dom(report_page, tmp_path):
    done = _chromium(report_page, tmp_path / "profile-dom", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    # The page's script marks the body when it has wired the tables: it ran without throwing.
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the report's script did not finish"
    assert dom.count("<figure") == 6
    assert dom.count("<svg") >= 6
    assert 'id="run-table"' in dom and 'id="plan-table"' in dom
