"""The demo's sweep: the rule that fixes it, its spec, and which of its runs are held out.

The rule (also in the README and in the spec's own comments below, fixed before any held-out
error was looked at):

- **compute levels**: 5 levels a factor 10^0.25 apart over one decade, 2·10¹⁰ to 2·10¹¹ FLOP.
  The top is set by the time budget: the plan at ten times the largest run must train in a few
  minutes on one core of a 2-core machine;
- **sizes**: 7 sizes per level, spaced evenly in log N over 2 decades around
  N* = sqrt(C / (6 r)), r = 100 tokens per parameter (near the IsoFLOP minima of two pilot
  sweeps), so every level spans four decades of tokens per parameter; sizes below the smallest
  model of the family (one layer of width 16, 3,120 non-embedding parameters) or with fewer than
  200 optimiser steps (whose loss reflects warmup and cooldown more than N and D) are skipped;
- **recipe**: the trainer's shape rule picks depth and width (aspect ratio 16 to 64), byte
  tokens of Python's standard library, batch 16 × 64 tokens, peak learning rate
  3·10⁻³ × 64 / d_model with a warmup-stable-decay schedule (20 % cooldown), one seed.

The held-out check fits every level but the top one and predicts the top level's runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalinglab.runs import Runs
    from scalinglab.sweep import Plan

__all__ = ["DEMO_SPEC", "demo_plan", "heldout_threshold"]

DEMO_SPEC = """\
# The sweep `scalinglab demo` trains: the same text is DEMO_SPEC in scalinglab/demo/sweep.py.
# Train it alone with: scalinglab sweep run examples/demo.toml
#
# The rule, fixed before any held-out error was looked at: 5 compute levels a factor 10^0.25
# apart over one decade, 2e10 to 2e11 FLOP (the top set by the time budget: the plan at 10x
# the largest run must train in minutes on one core), each with 7 sizes spaced evenly in log N
# over 2 decades around N* = sqrt(C / (6 * 100)) (100 tokens per parameter: near the IsoFLOP
# minima of two pilot sweeps), so every level spans four decades of tokens per parameter;
# sizes below the smallest model, or with fewer than 200 optimiser steps (whose loss reflects
# warmup and cooldown more than N and D), are skipped. Depth grows with width (aspect ratio
# 16 to 64, preferring 32) and the learning rate falls as 1/width (3e-3 at width 64). The demo
# fits every level but the top one and predicts the top one (held out).
[sweep]
name = "demo"
seed = 0

[data]
corpus = "stdlib"
tokenizer = "byte"

[model]
context_length = 64
param_basis = "non_embedding"
flops_method = "6nd"
aspect = 32
aspect_min = 16         # admits one layer of width 16 (3,120 parameters)
aspect_max = 64

[train]
batch_size = 16
lr = 3e-3
lr_ref_width = 64       # each run's lr is 3e-3 x 64 / d_model
schedule = "wsd"
cooldown_fraction = 0.2

[execution]
workers = 2

[design]
kind = "isoflop"
flops_min = 2e10
flops_max = 2e11
levels = 5
sizes_per_level = 7
width_decades = 2.0
tokens_per_param = 100
min_steps = 200
"""


def demo_plan(workers: int | None = None) -> Any:
    """The demo's sweep, designed (no training): a :class:`scalinglab.sweep.Plan`."""
    from scalinglab.sweep.budget import plan_sweep
    from scalinglab.sweep.spec import parse_spec

    return plan_sweep(parse_spec(DEMO_SPEC, default_name="demo"), workers=workers)


def heldout_threshold(plan: Plan, runs: Runs) -> float | None:
    """The compute above which points are held out: between the top two compute levels.

    For a design without levels (a WSD sweep), between the two largest computes, so that the
    largest-compute point alone is held out. ``None`` when there are fewer than two.
    """
    levels = sorted({r.compute_level for r in plan.runs if r.compute_level is not None})
    if len(levels) < 2:
        levels = sorted(set(runs.frame["flops"].astype(float)))
    if len(levels) < 2:
        return None
    # The geometric midpoint: a level's runs land within a few per cent of it.
    return math.sqrt(levels[-1] * levels[-2])
