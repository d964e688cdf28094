"""What defines a training run, with no torch: :class:`TrainConfig` and the precisions.

The sweep designs runs, keys them and checks their schedules through :class:`TrainConfig`, and
the CLI validates its options against :data:`PRECISIONS`; both must work in an install without
torch (``pip install scalinglab``), so they live here rather than beside the training loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scalinglab.counting import TransformerShape
from scalinglab.errors import ScalingLabError
from scalinglab.train.schedule import SCHEDULES, Schedule

__all__ = ["CHECKPOINT_NAME", "DEVICES", "PRECISIONS", "STABLE_NAME", "TrainConfig"]

# "bf16": autocast; "bf16-matmul": fp32 tensors with bf16 matmuls in oneDNN (CPU); "auto" times
# them on a CPU with bf16 units (see scalinglab.train.device).
PRECISIONS = ("auto", "fp32", "bf16", "bf16-matmul")
# Where a run trains; "cuda:N" picks one GPU.
DEVICES = ("cpu", "cuda")
# The schedule's arguments as this config names them, so its errors name the config's field.
_SCHEDULE_FIELDS = {"kind": "schedule", "peak_lr": "lr", "total_steps": "tokens"}
# A run of at least this many steps compiles on CUDA by default. torch.compile costs tens of
# seconds once (34 s for nanoGPT's small model on CPU, ../shared/data/cpu_baselines); nanoGPT
# compiles by default on GPU. The threshold is a judgement, not a measurement: a run of 1 000
# steps or more is long enough to repay a compile of that order if compiled steps are faster.
# benchmarks/gpu_train.py measures the step with and without compile on a GPU.
COMPILE_MIN_STEPS = 1000
# A run's checkpoint files in its checkpoint folder (scalinglab.train.checkpoints), named here
# so that the sweep finds them without importing torch.
CHECKPOINT_NAME = "checkpoint.pt"
STABLE_NAME = "stable.pt"
# What a run's length changes but its stable-phase state does not (see stable_phase): the
# evaluation and logging cadences default to fractions of the run, so they go too.
_LENGTH_FIELDS = (
    "tokens",
    "branch_tokens",
    "threads",
    "warmup_tokens",
    "eval_interval_tokens",
    "log_interval_tokens",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (and nothing about where it runs but ``device``).

    Parameters
    ----------
    shape
        The model. Its ``vocab_size`` must cover the corpus vocabulary.
    tokens
        Training tokens D; the run takes ``round(tokens / tokens_per_step)`` steps.
    corpus, tokenizer, corpus_vocab_size, corpus_seed
        Passed to :func:`scalinglab.train.corpus.load_corpus` (``vocab_size`` and ``seed``).
    batch_size
        Sequences per step; a step holds ``batch_size · context_length`` tokens. 32 sequences
        of 256 tokens = 8 192 tokens, small enough for many steps on a CPU budget.
    lr
        Peak learning rate. 1e-3: nanoGPT's value for its small char model, and in the range
        Kaplan et al. (2020, Fig. 22) found best for models of 1e5–1e7 parameters.
    min_lr_ratio
        Final learning rate over peak: 0.1 as in Chinchilla and nanoGPT.
    warmup_tokens
        Linear warmup; ``None`` = 5 % of the run (nanoGPT's 100 of 2 000 steps).
    schedule
        ``"cosine"`` or ``"wsd"``.
    cooldown_fraction
        WSD cooldown as a fraction of the run: 0.2, Hägele et al. (2024).
    branch_tokens
        WSD: the token counts at which extra cooldowns branch off the stable phase; each yields
        a :class:`BranchResult` for a run of ``≈ branch / (1 − cooldown_fraction)`` tokens.
    weight_decay
        AdamW decoupled decay on matrices (not gains or biases): 0.1 as GPT-3 and nanoGPT.
    grad_clip
        Clip the global gradient norm at this value (0 disables): 1.0 as GPT-3 and nanoGPT.
    beta1, beta2
        AdamW betas; 0.95 is GPT-3's β2 (nanoGPT's char recipe uses 0.99 for its tiny batches).
    dropout
        Off: single-epoch scaling runs do not overfit.
    eval_interval_tokens
        Validate every this many tokens; ``None`` = a tenth of the run. Always at the end.
    eval_tokens
        Validation tokens of the final evaluation (and of WSD branches): 2^17, a standard
        error of ≈ 0.3 % of the loss. Intermediate evaluations use an evenly strided subset
        of these windows holding at most a quarter of the tokens trained since the previous
        evaluation, so they cost at most ≈ 8 % of training (a forward pass is ≈ ⅓ of a step).
    log_interval_tokens
        Record a training-loss point this often; ``None`` = 1 % of the run.
    seed
        Initial weights and batch order.
    device, threads, precision
        ``"cpu"``/``"cuda"``; torch threads (``None`` = physical cores); ``"auto"``, ``"fp32"``,
        ``"bf16"`` (autocast) or ``"bf16-matmul"`` (CPU: fp32 tensors, bf16 matmuls in oneDNN),
        see :mod:`scalinglab.train.device`. On a CPU with bf16 units, auto times a few steps of
        this model at each precision (once per machine and model, cached).
    compile
        Wrap the model in ``torch.compile``. ``None`` (the default) decides by device: never on
        CPU (it did not pay there, see :mod:`.trainer`), and on CUDA for runs of at least
        ``COMPILE_MIN_STEPS`` steps, where its one-off compile time is small beside the run.

    Raises
    ------
    ScalingLabError
        At construction, for a bad value; its ``field`` names the argument at fault.
    """

    shape: TransformerShape
    tokens: int
    corpus: str = "stdlib"
    tokenizer: str = "byte"
    corpus_vocab_size: int | None = None
    corpus_seed: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_tokens: int | None = None
    schedule: str = "cosine"
    cooldown_fraction: float = 0.2
    branch_tokens: tuple[int, ...] = ()
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    dropout: float = 0.0
    eval_interval_tokens: int | None = None
    eval_tokens: int = 1 << 17
    log_interval_tokens: int | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    precision: str = "auto"
    compile: bool | None = None

    def __post_init__(self) -> None:
        if self.compile is None and not self.device.startswith("cuda"):
            # Auto is "off" on CPU; stored as such, so CPU runs keep the keys they always had.
            object.__setattr__(self, "compile", False)
        object.__setattr__(self, "branch_tokens", tuple(int(b) for b in self.branch_tokens))
        object.__setattr__(self, "tokens", int(self.tokens))
        for name in ("tokens", "batch_size", "eval_tokens"):
            if getattr(self, name) < 1:
                raise ScalingLabError(
                    f"{name} must be ≥ 1, got {getattr(self, name)!r}", field=name
                )
        if self.warmup_tokens is not None and self.warmup_tokens < 0:
            raise ScalingLabError(
                f"warmup_tokens must be ≥ 0, got {self.warmup_tokens!r}", field="warmup_tokens"
            )
        for name in ("eval_interval_tokens", "log_interval_tokens", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ScalingLabError(f"{name} must be ≥ 1, got {value!r}", field=name)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ScalingLabError(f"lr must be > 0, got {self.lr!r}", field="lr")
        if self.schedule not in SCHEDULES:
            raise ScalingLabError(
                f"schedule must be one of {SCHEDULES}, got {self.schedule!r}", field="schedule"
            )
        if self.branch_tokens and self.schedule != "wsd":
            raise ScalingLabError("branch_tokens needs schedule='wsd'", field="branch_tokens")
        if self.precision not in PRECISIONS:
            raise ScalingLabError(
                f"precision must be one of {PRECISIONS}, got {self.precision!r}", field="precision"
            )
        if self.device.partition(":")[0] not in DEVICES:
            raise ScalingLabError(
                f"device must be one of {DEVICES} (cuda:N for one GPU), got {self.device!r}",
                field="device",
            )
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ScalingLabError(
                    f"{name} must be ≥ 0, got {getattr(self, name)!r}", field=name
                )
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ScalingLabError(
                    f"{name} must be in [0, 1), got {getattr(self, name)!r}", field=name
                )
        # Builds the schedule once so bad warmup/cooldown/branches fail here, not mid-run.
        try:
            self.schedule_for_run()
        except ScalingLabError as exc:  # named by this config's field, not the schedule's
            field = _SCHEDULE_FIELDS.get(exc.field or "", exc.field)
            raise ScalingLabError(str(exc), field=field) from None
        self.branch_steps()

    @property
    def compiles(self) -> bool:
        """Whether the run wraps its model in ``torch.compile`` (``compile``, or auto)."""
        if self.compile is not None:
            return self.compile
        return self.total_steps >= COMPILE_MIN_STEPS

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step."""
        return self.batch_size * self.shape.context_length

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the main run."""
        return max(1, round(self.tokens / self.tokens_per_step))

    def schedule_for_run(self) -> Schedule:
        """The learning-rate schedule of the main run, in steps."""
        total = self.total_steps
        if self.warmup_tokens is None:
            warmup = round(0.05 * total)
        else:
            warmup = round(self.warmup_tokens / self.tokens_per_step)
        return Schedule(
            self.schedule,
            self.lr,
            total,
            min(warmup, total - 1),
            self.min_lr_ratio,
            self.cooldown_fraction,
        )

    def branch_steps(self) -> tuple[int, ...]:
        """Steps at which the WSD branches start, sorted and deduplicated."""
        if not self.branch_tokens:
            return ()
        sched = self.schedule_for_run()
        steps = sorted({round(b / self.tokens_per_step) for b in self.branch_tokens})
        for s in steps:
            if not sched.warmup_steps <= s <= sched.cooldown_start:
                lo = sched.warmup_steps * self.tokens_per_step
                hi = sched.cooldown_start * self.tokens_per_step
                raise ScalingLabError(
                    f"branch at {s * self.tokens_per_step} tokens is outside the stable phase "
                    f"[{lo}, {hi}] tokens",
                    field="branch_tokens",
                )
        return tuple(steps)

    def stable_phase(self) -> dict[str, Any]:
        """What a WSD run's state in its stable phase depends on: the config without its
        length, branch points, threads and logging cadence, with the warmup in resolved steps.

        Two WSD configs with equal stable phases have the same model and optimiser state at
        every step up to the earlier of their cooldown starts (:mod:`.checkpoints`).

        Raises
        ------
        ValueError
            The schedule is not WSD (a cosine run's lr depends on its length from step 0).
        """
        if self.schedule != "wsd":
            raise ValueError(f"only a WSD run has a stable phase, not {self.schedule!r}")
        d = self.to_dict()
        for name in _LENGTH_FIELDS:
            d.pop(name)
        d["warmup_steps"] = self.schedule_for_run().warmup_steps
        return d

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; :meth:`from_dict` rebuilds an equal config."""
        d = dataclasses.asdict(self)
        d["branch_tokens"] = list(self.branch_tokens)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise)."""
        d = dict(d)
        shape = d.pop("shape")
        if not isinstance(shape, TransformerShape):
            shape = TransformerShape(**shape)
        d["branch_tokens"] = tuple(d.get("branch_tokens", ()))
        return cls(shape=shape, **d)
