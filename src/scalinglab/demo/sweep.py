"""The demo's sweep: the rule that fixes it, its spec, and which of its runs are held out.

The rule (also in the README, and fixed before any held-out error was looked at):

- **compute levels**: 5 levels spaced evenly in log C, a factor √10 apart, from 2·10⁹ to
  2·10¹¹ FLOP. The top is set by the time budget: the plan at ten
  times the largest run must train in about three minutes on one core of this machine; the
  bottom is two decades below it, where the smallest model of the family (one layer of width
  16, 3,120 non-embedding parameters) still trains tens of optimiser steps;
- **sizes**: 5 sizes per level, spaced evenly in log N over 1.5 decades around
  N* = sqrt(C / (6 r)), r = 70 tokens per parameter (the
  IsoFLOP minima an earlier, separate sweep of this corpus found, ``examples/isoflop_stdlib.toml``),
  so every level spans the same three decades of tokens per parameter; sizes below the smallest
  model are skipped;
- **recipe**: the trainer's shape rule picks depth and width (one to a few layers), byte tokens of
  Python's standard library, batch 16 × 64 tokens, peak learning rate 3·10⁻³ with a
  warmup-stable-decay schedule (20 % cooldown), one seed.

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
# The rule, fixed before any held-out error was looked at: 5 compute levels a factor sqrt(10)
# apart, from 2e9 to 2e11 FLOP (the top set by the time budget: the plan at 10x the largest
# run trains in about three minutes on one core; the bottom two decades lower, where the
# smallest one-layer model still trains), each with 5 sizes spaced evenly in log N over 1.5
# decades around N* = sqrt(C / (6 * 70)) (70 tokens per parameter: the IsoFLOP minima of the
# separate sweep examples/isoflop_stdlib.toml), so every level spans three decades of tokens
# per parameter; sizes below the smallest model are skipped. The demo fits every level but the
# top one and predicts the top one (held out).
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
aspect_min = 16         # admit one-layer models down to d_model 16 (3,120 parameters)

[train]
batch_size = 16
lr = 3e-3
schedule = "wsd"
cooldown_fraction = 0.2

[execution]
workers = 2

[design]
kind = "isoflop"
flops_min = 2e9
flops_max = 2e11
levels = 5
sizes_per_level = 5
width_decades = 1.5
tokens_per_param = 70
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
