"""Training engine: a GPT family trained on real text with exact compute accounting.

- :mod:`.shapes`: from a target parameter count to a real shape (no torch import);
- :mod:`.model`: the GPT, built from a :class:`~scalinglab.counting.TransformerShape`;
- :mod:`.corpus`: byte/char/BPE corpora in memory-mapped token files, and a synthetic source
  with a known entropy rate;
- :mod:`.schedule`: warmup + cosine and warmup-stable-decay learning rates;
- :mod:`.trainer`: the loop, evaluation, FLOPs, MFU, checkpoints.

Names from the torch-backed modules load on first use, so ``import scalinglab.train`` (and the
shape rule) stays cheap for planners.
"""

from __future__ import annotations

import importlib
from typing import Any

from scalinglab.train.shapes import shape_for_params

__all__ = [
    "GPT",
    "BranchResult",
    "Corpus",
    "CurvePoint",
    "GPTConfig",
    "Schedule",
    "SyntheticSource",
    "TrainConfig",
    "TrainResult",
    "load_corpus",
    "shape_for_params",
    "train",
]

_LAZY = {
    "GPT": "model",
    "GPTConfig": "model",
    "Corpus": "corpus",
    "SyntheticSource": "corpus",
    "load_corpus": "corpus",
    "Schedule": "schedule",
    "BranchResult": "trainer",
    "CurvePoint": "trainer",
    "TrainConfig": "trainer",
    "TrainResult": "trainer",
    "train": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"scalinglab.train.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'scalinglab.train' has no attribute {name!r}")
