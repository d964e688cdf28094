"""What a sweep spec holds: its validated values, the choices each key admits, and SpecError.

:mod:`.spec` reads a TOML spec into these values (checking every key); the designs, the budget
and the executors read them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from scalinglab.errors import ScalingLabError

if TYPE_CHECKING:  # spec_checks, which the command module uses, imports this module
    from scalinglab.sweep.command import CommandSpec

__all__ = [
    "BudgetSpec",
    "DataSpec",
    "DesignSpec",
    "ExecutionSpec",
    "ModelSpec",
    "Point",
    "SpecError",
    "SweepSpec",
    "TrainSpec",
]

PARAM_BASES = ("non_embedding", "total")
FLOPS_METHODS = ("6nd", "per_operation")
DESIGN_KINDS = ("isoflop", "grid", "wsd", "points")
ON_OVER = ("refuse", "trim")
POSITIONALS = ("learned", "rotary")
MLPS = ("gelu", "gated")
# [model] keys passed on to the trainer's shape rule (scalinglab.train.shapes.shape_for_params).
SHAPE_OPTIONS = (
    "tied_embeddings",
    "positional",
    "mlp",
    "bias",
    "aspect",
    "aspect_min",
    "aspect_max",
)


# A ``points`` design's point: (params, tokens), or (params, tokens, branch_tokens) for a WSD
# run with cooldowns branched off its stable phase at those token counts, or with a fourth
# element (warmup_tokens, resume_tokens) for a WSD run that continues a kept stable-phase
# checkpoint (scalinglab.train.checkpoints) at resume_tokens, its warmup pinned to the trunk's.
Point = (
    tuple[float, float]
    | tuple[float, float, tuple[int, ...]]
    | tuple[float, float, tuple[int, ...], tuple[int, int]]
)


class SpecError(ScalingLabError):
    """A sweep spec that cannot be read or validated; the message names the key.

    ``field`` is the dotted key at fault (``"train.batch_size"``, ``"design.flops"``), or
    ``"spec"`` when the spec as a whole cannot be read.
    """


@dataclass(frozen=True)
class DataSpec:
    """Corpus and tokenisation (see :func:`scalinglab.train.corpus.load_corpus`)."""

    corpus: str = "stdlib"
    tokenizer: str = "byte"
    vocab_size: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The model family: context, how N is counted, how FLOPs are counted, shape options.

    Attributes
    ----------
    context_length
        Tokens per training sequence.
    param_basis
        The count the sweep declares as N: ``"non_embedding"`` (Kaplan et al. 2020) or
        ``"total"`` (Hoffmann et al. 2022). Both are stored; this picks the one fits use.
    flops_method
        ``"6nd"``: C = 6·N·D with N as declared; ``"per_operation"``: Hoffmann et al. (2022),
        Appendix F, which adds attention and vocabulary FLOPs.
    tied_embeddings, positional, mlp, bias
        Shape options, passed to the trainer's shape rule (``None``: its default).
    aspect, aspect_min, aspect_max
        The shape rule's preferred d_model/n_layer and the band it searches
        (:func:`scalinglab.train.shapes.shape_for_params`); a lower ``aspect_min`` admits
        narrower one-layer models, so small sizes snap less coarsely.
    """

    context_length: int = 64
    param_basis: str = "non_embedding"
    flops_method: str = "6nd"
    tied_embeddings: bool | None = None
    positional: str | None = None
    mlp: str | None = None
    bias: bool | None = None
    aspect: float | None = None
    aspect_min: float | None = None
    aspect_max: float | None = None

    def shape_options(self) -> dict[str, Any]:
        """The shape options that were set, as keyword arguments for the shape rule."""
        return {n: getattr(self, n) for n in SHAPE_OPTIONS if getattr(self, n) is not None}


@dataclass(frozen=True)
class TrainSpec:
    """Training options common to every run; ``None`` keeps the trainer's default.

    ``lr_ref_width`` is not a trainer option: when set, each run trains with
    ``lr × lr_ref_width / d_model``, Adam's learning rate inversely proportional to the width
    as μP prescribes for hidden weights (Yang et al. 2022), so that one ``lr`` tuned at one
    width serves a family of widths.
    """

    batch_size: int | None = None
    lr: float | None = None
    lr_ref_width: int | None = None
    min_lr_ratio: float | None = None
    warmup_tokens: int | None = None
    schedule: str | None = None
    cooldown_fraction: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    eval_interval_tokens: int | None = None
    eval_tokens: int | None = None
    log_interval_tokens: int | None = None
    beta1: float | None = None
    beta2: float | None = None
    dropout: float | None = None
    device: str | None = None
    precision: str | None = None
    compile: bool | None = None

    def options(self) -> dict[str, Any]:
        """The options that were set, as TrainConfig keyword arguments (``lr`` unscaled)."""
        return {k: v for k, v in asdict(self).items() if v is not None and k != "lr_ref_width"}


@dataclass(frozen=True)
class BudgetSpec:
    """The budget: total FLOPs, or an estimated wall-clock limit on the chosen device."""

    flops: float | None = None
    wall_clock_s: float | None = None
    on_over: str = "refuse"


@dataclass(frozen=True)
class ExecutionSpec:
    """Defaults for ``sweep run`` (the command line overrides them), and each run's resources.

    ``gpus_per_run``, ``cpus_per_run`` and ``memory_per_run`` (bytes) become Ray task
    resources; the local executor gives each worker its own ``gpus_per_run`` GPUs through
    ``CUDA_VISIBLE_DEVICES``.
    """

    workers: int = 1
    max_retries: int = 2
    executor: str = "local"
    gpus_per_run: int = 0
    cpus_per_run: float | None = None
    memory_per_run: int | None = None


@dataclass(frozen=True)
class DesignSpec:
    """Which runs to train. Fields that a kind does not use stay ``None``.

    ``isoflop``: compute levels (``flops`` list, or ``flops_min``/``flops_max``/``levels``
    log-spaced), ``sizes_per_level`` model sizes spaced evenly in log N over
    ``width_decades`` decades centred on the expected optimum N = sqrt(C / (6·r)), with
    r = ``tokens_per_param`` (about 20 at the Chinchilla optimum, Hoffmann et al. 2022).

    ``grid``: every pair of ``params`` × ``tokens``.

    ``wsd``: one warmup-stable-decay run per size in ``params`` for ``tokens`` tokens, with
    extra cooldowns branched from its stable phase at ``branch_tokens`` (or at
    ``branch_fractions`` of ``tokens``); every cooldown is a point.

    ``points``: the listed ``[params, tokens]`` pairs, one run each (what ``sweep suggest``
    writes); a point ``[params, tokens, [b1, b2, ...]]`` is one WSD run (``train.schedule =
    "wsd"``) with a cooldown branched off its stable phase at each ``b`` tokens, as ``wsd`` does
    for every size. A fourth element ``{warmup_tokens = W, resume_tokens = R}`` makes the run
    continue the stable phase of a finished WSD run the store keeps a checkpoint of (at R
    tokens, after a warmup of W tokens): it costs its tokens after R only (``sweep suggest``
    writes these; ``sweep run`` trains from scratch if the checkpoint is gone).
    """

    kind: str
    flops: tuple[float, ...] | None = None
    flops_min: float | None = None
    flops_max: float | None = None
    levels: int | None = None
    sizes_per_level: int | None = None
    width_decades: float | None = None
    tokens_per_param: float | None = None
    params: tuple[float, ...] | None = None
    tokens: tuple[float, ...] | None = None
    branch_tokens: tuple[int, ...] | None = None
    branch_fractions: tuple[float, ...] | None = None
    points: tuple[Point, ...] | None = None
    min_steps: int = 20

    def compute_levels(self) -> tuple[float, ...]:
        """The IsoFLOP compute levels, in FLOP (explicit, or log-spaced min..max)."""
        if self.flops is not None:
            return self.flops
        assert self.flops_min is not None and self.flops_max is not None and self.levels
        if self.levels == 1:
            return (self.flops_min,)
        ratio = (self.flops_max / self.flops_min) ** (1.0 / (self.levels - 1))
        return tuple(self.flops_min * ratio**i for i in range(self.levels))


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec. Build it with :func:`load_spec` or :func:`parse_spec`."""

    name: str
    design: DesignSpec
    seed: int = 0
    store: str = "scalinglab.db"
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    execution: ExecutionSpec = field(default_factory=ExecutionSpec)
    command: CommandSpec | None = None  # set: each run is this command, not our trainer

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready mapping (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))
