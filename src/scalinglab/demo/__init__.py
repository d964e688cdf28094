"""``scalinglab demo``: the whole loop on this machine, from training to a tested plan.

1. **Sweep** (:mod:`.sweep`): train an IsoFLOP family of small GPT models on the built-in
   ``stdlib`` corpus into a store, ``./scalinglab.db`` by default, by a rule fixed in advance.
   Finished runs are kept: a second demo trains nothing and reuses them.
2. **Fit** (:mod:`.law`): the Chinchilla law L(N, D) = E + A/N^α + B/D^β with a bootstrap,
   checked for identification; if the sweep does not pin it down, the simplest form it does.
3. **Held-out check**: the same law fitted without the top compute level predicts that level.
4. **Plan, then train the plan** (:mod:`.check`): the compute-optimal run at ten times the
   largest sweep run, predicted with its interval for one run (:mod:`.predictive`), trained,
   and measured; and an alternative at the same compute (20 tokens per parameter), to show
   what the plan's allocation is worth.
5. **Report**: one self-contained HTML page that leads with the answer.

The sweep is :data:`DEMO_SPEC` (also ``examples/demo.toml``, to read and change).
"""

from scalinglab.demo.check import (
    ALTERNATIVE_TOKENS_PER_PARAM,
    BUDGET_MULTIPLE,
    PLAN_LEVEL,
    CheckPlan,
    plan_check,
)
from scalinglab.demo.law import FALLBACK_LAW, LawChoice, choose_law, identification_problems
from scalinglab.demo.predictive import predictive_fit
from scalinglab.demo.run import DemoResult, run_demo
from scalinglab.demo.sweep import DEMO_SPEC, demo_plan, heldout_threshold

__all__ = [
    "ALTERNATIVE_TOKENS_PER_PARAM",
    "BUDGET_MULTIPLE",
    "DEMO_SPEC",
    "FALLBACK_LAW",
    "PLAN_LEVEL",
    "CheckPlan",
    "DemoResult",
    "LawChoice",
    "choose_law",
    "demo_plan",
    "heldout_threshold",
    "identification_problems",
    "plan_check",
    "predictive_fit",
    "run_demo",
]
