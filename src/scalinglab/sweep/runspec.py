"""A planned run and its key: what a sweep design produces and the store records.

A run's key is the sha256 of its full training config, so the same run planned twice (by two
sweeps, or by one sweep run again) is one row of the store, trained once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalinglab.counting import TransformerShape

__all__ = ["KEY_VERSION", "BranchSpec", "RunSpec", "branch_key", "run_key"]

# Bumped when the meaning of a key changes, so old store rows are never mistaken for new runs.
KEY_VERSION = "scalinglab-run-1"


@dataclass(frozen=True)
class BranchSpec:
    """A WSD cooldown branched from a run's stable phase: one more point of the law.

    Attributes
    ----------
    key
        Idempotency key of the point: hash of the parent's key and the branch point.
    branch_tokens
        Tokens of the stable phase where the cooldown starts.
    tokens
        Tokens at the end of the cooldown (the point's D).
    flops
        Training compute of the point by the sweep's counting method (trunk + cooldown).
    """

    key: str
    branch_tokens: int
    tokens: int
    flops: float


@dataclass(frozen=True)
class RunSpec:
    """One planned training run, with everything needed to train and to record it.

    Attributes
    ----------
    key
        sha256 of the canonical JSON of the full training config (threads excluded: they
        change speed, not the result). The same run planned twice has the same key.
    config
        The trainer's config as canonical JSON (``TrainConfig.to_dict()``).
    shape
        The model's shape; ``params_total``/``params_non_embedding`` are its exact counts.
    params
        N as the sweep declares it (``param_basis``).
    tokens
        Training tokens D of the run's own end point.
    flops
        Compute of the end point by ``flops_method``.
    cost_flops
        Compute of the whole run: the end point plus every branched cooldown.
    compute_level
        The IsoFLOP level the run belongs to (``None`` for other designs).
    branches
        WSD cooldowns branched from this run.
    schedule, warmup_tokens, decay_tokens
        The learning-rate schedule as the trainer resolves it: warmup length, and the decay
        horizon (the whole run for cosine, whose cycle should match the run (Hoffmann et al.
        2022); the final cooldown for WSD).
    resume_tokens
        WSD: tokens another run already trained for this one, whose kept stable-phase
        checkpoint it is planned to start from (:mod:`.trunks`); not part of the key (the
        result is the same either way), and not counted in ``cost_flops``.
    """

    key: str
    config: str
    shape: TransformerShape
    seed: int
    tokens: int
    params: int
    params_total: int
    params_non_embedding: int
    param_basis: str
    flops_method: str
    flops: float
    cost_flops: float
    compute_level: float | None = None
    branches: tuple[BranchSpec, ...] = ()
    schedule: str | None = None
    warmup_tokens: int | None = None
    decay_tokens: int | None = None
    resume_tokens: int = 0

    @property
    def config_dict(self) -> dict[str, Any]:
        """The config as a plain mapping (a fresh copy)."""
        return json.loads(self.config)

    @property
    def cost_tokens(self) -> int:
        """Tokens the run trains in all: its own length plus every cooldown's, less what a kept
        checkpoint it starts from already trained."""
        cooldowns = sum(b.tokens - b.branch_tokens for b in self.branches)
        return self.tokens + cooldowns - self.resume_tokens

    @property
    def points(self) -> int:
        """Points of the law this run yields (itself and its branches)."""
        return 1 + len(self.branches)


def run_key(config: Mapping[str, Any]) -> str:
    """Idempotency key of a run: sha256 of its config's canonical JSON (sorted, no spaces).

    ``threads`` is dropped first: it changes how fast a run goes, not what it computes.
    """
    clean = {k: v for k, v in config.items() if k != "threads"}
    text = json.dumps({"v": KEY_VERSION, "config": clean}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def branch_key(parent: str, branch_tokens: int) -> str:
    """Idempotency key of a WSD cooldown: its parent run's key and where it branches."""
    text = json.dumps({"v": KEY_VERSION, "parent": parent, "branch_tokens": branch_tokens})
    return hashlib.sha256(text.encode()).hexdigest()
