"""Training engine: a GPT family trained on real text with exact compute accounting.

- :mod:`.config`: :class:`TrainConfig`, what defines a run (no torch import);
- :mod:`.shapes`: from a target parameter count to a real shape (no torch import);
- :mod:`.model`: the GPT, built from a :class:`~scalinglab.counting.TransformerShape`;
- :mod:`.corpus`: byte/char/BPE corpora in memory-mapped token files, and a synthetic source
  with a known entropy rate;
- :mod:`.schedule`: warmup + cosine and warmup-stable-decay learning rates;
- :mod:`.trainer`: the loop, evaluation, FLOPs, MFU, checkpoints;
- :mod:`.results`: what a run returns (no torch import).

Names from the torch-backed modules load on first use, so ``import scalinglab.train``, the
shape rule and :class:`TrainConfig` need no torch (``pip install scalinglab`` has none); without
it, the trainer's names raise a one-line error saying to ``pip install 'scalinglab[train]'``.
"""

from __future__ import annotations

import importlib
from typing import Any

from scalinglab._optional import as_missing_dependency
from scalinglab.train.config import PRECISIONS, TrainConfig
from scalinglab.train.shapes import shape_for_params

__all__ = [
    "GPT",
    "PRECISIONS",
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
    "BranchResult": "results",
    "CurvePoint": "results",
    "TrainResult": "results",
    "train": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        try:
            module = importlib.import_module(f"scalinglab.train.{_LAZY[name]}")
        except ImportError as exc:
            missing = as_missing_dependency(exc, f"scalinglab.train.{name}")
            if missing is None:
                raise
            raise missing from exc
        return getattr(module, name)
    raise AttributeError(f"module 'scalinglab.train' has no attribute {name!r}")
