"""benchmarks/adaptive_trainer.py (issue 18) on its tiny sweep: real training, so slow.

The suggest rounds spend at most half of IsoFLOP's compute, buy only buildable runs (the
family's shapes, whole steps), never train a point twice, and start from the same seed losses
as the IsoFLOP sweep's (the seed is retrained deterministically)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import adaptive_trainer

from scalinglab import load_runs
from scalinglab.sweep import plan_sweep


@pytest.mark.slow
def test_suggest_rounds_train_buildable_runs_within_half_the_isoflop_compute(
    tmp_path: Path,
) -> None:
    spec = adaptive_trainer.tiny_spec()
    result = adaptive_trainer.run_benchmark(
        spec, tmp_path, adaptive_trainer.TINY_TARGET, workers=2, log=lambda _: None
    )
    total = result["isoflop_flops"]
    iso, sug = result["isoflop"], result["suggest"]
    # IsoFLOP buys its 2 levels above the seed; suggest stops at half that compute.
    assert len(iso) == 3 and iso[-1][0] == pytest.approx(total)
    assert len(sug) >= 2 and sug[-1][0] <= total / 2 * 1.0001
    assert sum(b["cost_flops"] for b in result["bought"]) == pytest.approx(sug[-1][0])
    # The same seed runs retrained give the same losses, so the same width and error.
    assert sug[0] == pytest.approx(iso[0])
    for _, width, error in iso + sug:
        assert math.isfinite(width) and width > 0 and math.isfinite(error)
    # Buildable: planned again as points of the family, each run keeps its N and D exactly.
    step = spec.train.batch_size * spec.model.context_length
    for b in result["bought"]:
        assert b["tokens"] % step == 0
        assert all(d % step == 0 and d < b["tokens"] for d in b["cooldowns_to_tokens"])
        again = adaptive_trainer._points(spec, "again", [(b["params"], b["tokens"])])
        (run,) = plan_sweep(again).runs
        assert (run.params, run.tokens) == (b["params"], b["tokens"])
    # Every point of the suggest store was trained once.
    frame = load_runs(tmp_path / "suggest.db").frame
    assert not frame.duplicated(["params", "tokens"]).any()
    truth = result["target"]["truth_loss"]
    iso_frame = load_runs(tmp_path / "isoflop.db").frame
    at = iso_frame[
        (iso_frame["params"] == adaptive_trainer.TINY_TARGET[0])
        & (iso_frame["tokens"] == adaptive_trainer.TINY_TARGET[1])
    ]
    assert truth == float(at["loss"].iloc[0])
    assert np.isfinite(result["width_ratio_half"])
