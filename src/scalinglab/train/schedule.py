"""Learning-rate schedules: warmup + cosine, and warmup-stable-decay (WSD) with branched cooldowns.

Both warm up linearly as nanoGPT does (``peak · (step + 1) / (warmup + 1)``, so step 0 already
moves the weights). Cosine then follows nanoGPT's formula down to ``min_lr_ratio · peak`` at
the last step. WSD (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond
Fixed Training Durations") holds the peak and cools down over the last ``cooldown_fraction``
of the steps; the authors found a (1 − √t) cooldown of about 20 % of the run to match or beat
cosine, which is the default here.

A WSD run's stable phase is shared by every shorter WSD run with the same warmup: a cooldown
*branched* at step s from a long run gives, exactly, the run of :func:`branch_total_steps` steps.
So one long run yields several points of the loss-vs-data curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalinglab.errors import ScalingLabError

__all__ = ["SCHEDULES", "Schedule", "branch_total_steps"]

SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("1-sqrt", "linear")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule over optimizer steps.

    Parameters
    ----------
    kind
        ``"cosine"`` or ``"wsd"``.
    peak_lr
        Learning rate after warmup.
    total_steps
        Steps in the run.
    warmup_steps
        Linear warmup steps (≥ 0, < total_steps).
    min_lr_ratio
        Final learning rate as a fraction of ``peak_lr``.
    cooldown_fraction
        WSD only: fraction of the steps spent cooling down (Hägele et al.: 0.2).
    cooldown_shape
        WSD only: ``"1-sqrt"`` (Hägele et al.'s best) or ``"linear"``.
    """

    kind: str
    peak_lr: float
    total_steps: int
    warmup_steps: int
    min_lr_ratio: float = 0.1
    cooldown_fraction: float = 0.2
    cooldown_shape: str = "1-sqrt"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ScalingLabError(
                f"schedule must be one of {SCHEDULES}, got {self.kind!r}", field="kind"
            )
        if not (math.isfinite(self.peak_lr) and self.peak_lr > 0):
            raise ScalingLabError(f"peak_lr must be > 0, got {self.peak_lr!r}", field="peak_lr")
        if self.total_steps < 1:
            raise ScalingLabError(
                f"total_steps must be ≥ 1, got {self.total_steps!r}", field="total_steps"
            )
        if not 0 <= self.warmup_steps < self.total_steps:
            raise ScalingLabError(
                f"warmup_steps must be in [0, total_steps), got {self.warmup_steps} of "
                f"{self.total_steps}",
                field="warmup_steps",
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ScalingLabError(
                f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}", field="min_lr_ratio"
            )
        if not 0 < self.cooldown_fraction < 1:
            raise ScalingLabError(
                f"cooldown_fraction must be in (0, 1), got {self.cooldown_fraction!r}",
                field="cooldown_fraction",
            )
        if self.cooldown_shape not in COOLDOWN_SHAPES:
            raise ScalingLabError(
                f"cooldown_shape must be one of {COOLDOWN_SHAPES}, got {self.cooldown_shape!r}",
                field="cooldown_shape",
            )

    @property
    def min_lr(self) -> float:
        """The final learning rate."""
        return self.peak_lr * self.min_lr_ratio

    @property
    def cooldown_steps(self) -> int:
        """WSD: steps in the cooldown (at least 1); 0 for cosine."""
        if self.kind != "wsd":
            return 0
        return max(1, round(self.cooldown_fraction * self.total_steps))

    @property
    def cooldown_start(self) -> int:
        """WSD: first step of the cooldown; the stable phase is [warmup_steps, cooldown_start)."""
        return self.total_steps - self.cooldown_steps

    def lr(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / (self.warmup_steps + 1)
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            ratio = min((step - self.warmup_steps) / span, 1.0)
            coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
            return self.min_lr + coeff * (self.peak_lr - self.min_lr)
        if step < self.cooldown_start:
            return self.peak_lr
        progress = min((step - self.cooldown_start + 1) / self.cooldown_steps, 1.0)
        decay = math.sqrt(progress) if self.cooldown_shape == "1-sqrt" else progress
        return self.min_lr + (1.0 - decay) * (self.peak_lr - self.min_lr)

    def branched(self, start_step: int) -> Schedule:
        """The WSD schedule whose cooldown starts at ``start_step`` (same warmup and shape).

        Raises
        ------
        ValueError
            If this is not WSD, or ``start_step`` is outside this run's stable phase.
        """
        if self.kind != "wsd":
            raise ValueError("only a WSD schedule has cooldowns to branch")
        if not self.warmup_steps <= start_step <= self.cooldown_start:
            raise ValueError(
                f"a branch must start in the stable phase [{self.warmup_steps}, "
                f"{self.cooldown_start}], got step {start_step}"
            )
        total = branch_total_steps(start_step, self.cooldown_fraction)
        return Schedule(
            "wsd",
            self.peak_lr,
            total,
            self.warmup_steps,
            self.min_lr_ratio,
            self.cooldown_fraction,
            self.cooldown_shape,
        )


def branch_total_steps(start_step: int, cooldown_fraction: float) -> int:
    """Length of the WSD run whose cooldown starts exactly at ``start_step``.

    The smallest S with ``S − max(1, round(f·S)) = start_step``. As S grows by one the
    cooldown grows by 0 or 1 step, so its start takes every value and S always exists.
    """
    if start_step < 0:
        raise ValueError(f"start_step must be ≥ 0, got {start_step}")
    guess = max(1, math.floor(start_step / (1 - cooldown_fraction)) - 2)
    while guess - max(1, round(cooldown_fraction * guess)) < start_step:
        guess += 1
    return guess
