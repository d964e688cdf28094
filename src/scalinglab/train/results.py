"""What a training run returns: its loss curve, its WSD cooldowns and its summary, with no torch.

:class:`TrainResult` round-trips through a JSON-safe dict (``to_dict``/``from_dict``): sweep
workers send it to the driver that way, and the store records it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scalinglab.train.config import TrainConfig

__all__ = ["BranchResult", "CurvePoint", "TrainResult"]


@dataclass(frozen=True)
class CurvePoint:
    """One point of the loss curve.

    ``train_loss`` is the mean training loss over the steps since the previous point;
    ``val_loss`` is set at evaluation points only (``None`` elsewhere). FLOPs count training
    only, from the start of the run. ``wall_s`` is the time since the run (first) started.
    """

    tokens: int
    flops_6nd: float
    flops_counted: float
    train_loss: float
    val_loss: float | None
    lr: float
    wall_s: float


@dataclass(frozen=True)
class BranchResult:
    """A WSD cooldown branched at ``branch_tokens``, ending after ``tokens`` tokens in total."""

    branch_tokens: int
    tokens: int
    val_loss: float
    flops_6nd: float
    flops_counted: float


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    ``tokens_per_s`` and ``mfu`` use the time spent in training steps of the main run
    (evaluation, checkpoints and branches excluded); ``wall_s`` is the whole call, summed over
    resumptions. ``mfu`` = per-operation FLOP/s over the device's measured peak.
    ``resumed_tokens``: tokens of the run trained by another run, whose stable-phase
    checkpoint this one started from (0 when it trained from step 0); its curve, times and
    speed cover the whole run, that part included.
    """

    config: TrainConfig
    params_total: int
    params_non_embedding: int
    tokens: int
    flops_6nd: float
    flops_counted: float
    val_loss: float
    curve: tuple[CurvePoint, ...]
    branches: tuple[BranchResult, ...]
    tokens_per_s: float
    mfu: float
    device: str
    precision: str
    wall_s: float
    versions: Mapping[str, str] = field(default_factory=dict)
    resumed_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (config included)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["config"] = self.config.to_dict()
        d["curve"] = [dataclasses.asdict(p) for p in self.curve]
        d["branches"] = [dataclasses.asdict(b) for b in self.branches]
        d["versions"] = dict(self.versions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainResult:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["config"] = TrainConfig.from_dict(d["config"])
        d["curve"] = tuple(CurvePoint(**p) for p in d["curve"])
        d["branches"] = tuple(BranchResult(**b) for b in d["branches"])
        return cls(**d)


# --- data ----------------------------------------------------------------------------------
