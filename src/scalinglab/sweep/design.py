"""Sweep designs: which (N, D) runs to train, at what cost, and whether they can pin a law down.

Three designs, each a function of a validated :class:`~scalinglab.sweep.spec.SweepSpec`:

- **IsoFLOP** (Hoffmann et al. 2022, approach 2): at each compute level C, model sizes
  spaced evenly in log N around the expected optimum N* = sqrt(C / (6·r)), r the expected
  tokens per parameter; each size trains D = C / (FLOPs per token) tokens.
- **Grid**: every N in a list × every D in a list.
- **WSD reuse** (Hägele et al. 2024): one warmup-stable-decay run per size, with extra
  cooldowns branched from its stable phase; every cooldown is a point of the law at the
  price of its cooldown only.

Every target N is snapped to a real model by the trainer's shape rule and D to whole optimiser
steps, so the planned counts are exactly the trained ones. :func:`plan_sweep` then applies the
budget (trim or refuse, with the reason) and checks coverage before anything runs.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import numpy as np

from scalinglab.counting import (
    FLOPS_PER_PARAM_TOKEN,
    TransformerShape,
    count_params,
    flops_per_token,
)
from scalinglab.sweep.spec import SpecError, SweepSpec
from scalinglab.train.config import TrainConfig
from scalinglab.train.schedule import branch_total_steps
from scalinglab.train.shapes import shape_for_params

__all__ = [
    "BranchSpec",
    "BudgetError",
    "Coverage",
    "Plan",
    "RunSpec",
    "ThroughputModel",
    "check_coverage",
    "design_runs",
    "plan_sweep",
    "run_key",
]

# Bumped when the meaning of a key changes, so old store rows are never mistaken for new runs.
KEY_VERSION = "scalinglab-run-1"


class BudgetError(SpecError):
    """A design that does not fit its budget (and the spec says to refuse), or cannot be timed."""


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

    @property
    def config_dict(self) -> dict[str, Any]:
        """The config as a plain mapping (a fresh copy)."""
        return json.loads(self.config)

    @property
    def cost_tokens(self) -> int:
        """Tokens the run trains in all: its own length plus every cooldown's."""
        return self.tokens + sum(b.tokens - b.branch_tokens for b in self.branches)

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


def _branch_key(parent: str, branch_tokens: int) -> str:
    text = json.dumps({"v": KEY_VERSION, "parent": parent, "branch_tokens": branch_tokens})
    return hashlib.sha256(text.encode()).hexdigest()


# --- the trainer's rules (its torch-free config, shape rule and schedules) -----------------


def _shape_for_params(target: float, spec: SweepSpec, vocab_size: int) -> TransformerShape:
    return shape_for_params(
        target,
        vocab_size=vocab_size,
        context_length=spec.model.context_length,
        basis=spec.model.param_basis,
        **spec.model.shape_options(),
    )


def _canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    # Round-trip through the trainer's own config so that its defaults are part of the key:
    # a trainer whose default lr changed trains different runs, and must not match old rows.
    return TrainConfig.from_dict(config).to_dict()


def _schedule_tokens(config: dict[str, Any]) -> tuple[int, int]:
    """Warmup and decay horizon in tokens, as the trainer resolves them for ``config``."""
    cfg = TrainConfig.from_dict(config)
    sched = cfg.schedule_for_run()
    step = cfg.tokens_per_step
    decay = sched.cooldown_steps if sched.kind == "wsd" else sched.total_steps
    return sched.warmup_steps * step, decay * step


def _trainer_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def _cooldown_end(branch_tokens: int, cooldown_fraction: float, step_tokens: int) -> int:
    """Tokens at the end of a cooldown branched at ``branch_tokens`` (a whole step count).

    The trainer gives a branched cooldown the same share of its run as the main cooldown,
    so a branch at step s ends at step S with S − round(f·S) = s
    (:func:`scalinglab.train.schedule.branch_total_steps`).
    """
    return branch_total_steps(branch_tokens // step_tokens, cooldown_fraction) * step_tokens


def resolve_vocab_size(spec: SweepSpec) -> int:
    """The vocabulary size the sweep's shapes use (given, 256 for bytes, or the corpus's own)."""
    if spec.data.vocab_size is not None:
        return spec.data.vocab_size
    if spec.data.tokenizer == "byte" and spec.data.corpus != "synthetic":
        return 256
    from scalinglab.train.corpus import load_corpus

    corpus = load_corpus(spec.data.corpus, tokenizer=spec.data.tokenizer, seed=spec.data.seed or 0)
    return int(corpus.vocab_size)


# --- designs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    spec: SweepSpec
    vocab_size: int
    step_tokens: int
    cooldown_fraction: float
    schedule: str | None
    notes: list[str] = field(default_factory=list)


def design_runs(
    spec: SweepSpec, *, vocab_size: int | None = None
) -> tuple[list[RunSpec], list[str]]:
    """Every run the spec's design asks for, before the budget is applied.

    Parameters
    ----------
    spec
        A validated spec.
    vocab_size
        The corpus's vocabulary size (read from the corpus when ``None``).

    Returns
    -------
    runs, notes
        The runs in design order and remarks on what snapping changed (merged duplicates,
        skipped sizes).

    Raises
    ------
    SpecError
        When a size or length cannot be built (below the smallest model, fewer than
        ``design.min_steps`` steps), naming the key.
    """
    defaults = _trainer_defaults()
    batch = spec.train.batch_size or defaults.get("batch_size")
    if not isinstance(batch, int):
        raise SpecError(
            "train.batch_size: the trainer has no default; set it in [train]",
            field="train.batch_size",
        )
    schedule = spec.train.schedule
    if spec.design.kind == "wsd":
        if schedule not in (None, "wsd"):
            raise SpecError(
                f"train.schedule: a wsd design trains with 'wsd', got {schedule!r}",
                field="train.schedule",
            )
        schedule = "wsd"
    fraction = spec.train.cooldown_fraction
    if fraction is None:
        fraction = float(defaults.get("cooldown_fraction", 0.2))
    ctx = _Context(
        spec=spec,
        vocab_size=vocab_size if vocab_size is not None else resolve_vocab_size(spec),
        step_tokens=batch * spec.model.context_length,
        cooldown_fraction=fraction,
        schedule=schedule,
    )
    if spec.design.kind == "isoflop":
        runs = _isoflop(ctx)
    elif spec.design.kind == "grid":
        runs = _grid(ctx)
    else:
        runs = _wsd(ctx)
    return runs, ctx.notes


def _declared(shape: TransformerShape, basis: str) -> tuple[int, int, int]:
    counts = count_params(shape)
    params = counts.non_embedding if basis == "non_embedding" else counts.total
    return params, counts.total, counts.non_embedding


def _flops_per_token(shape: TransformerShape, params: int, method: str) -> float:
    return (
        FLOPS_PER_PARAM_TOKEN * params
        if method == "6nd"
        else float(flops_per_token(shape).per_operation)
    )


def _snap(ctx: _Context, target: float, key: str) -> TransformerShape:
    """The real shape nearest ``target`` params, or a SpecError naming ``key``."""
    try:
        shape = _shape_for_params(target, ctx.spec, ctx.vocab_size)
    except ValueError as exc:
        # The shape options come from [model]: an empty aspect band is the spec's fault.
        where = "model" if "aspect" in str(exc) else key
        raise SpecError(
            f"{where}: no model of {target:.3g} parameters: {exc}", field=where
        ) from None
    params = _declared(shape, ctx.spec.model.param_basis)[0]
    # The shape rule rounds to whole layers and heads; beyond a factor 2 the target is
    # outside what the family can build (e.g. below one layer of the narrowest width).
    if not 0.5 <= params / target <= 2.0:
        basis = ctx.spec.model.param_basis.replace("_", "-")
        raise SpecError(
            f"{key}: {target:.3g} {basis} parameters cannot be built; the nearest model has "
            f"{params:,} (n_layer={shape.n_layer}, d_model={shape.d_model})",
            field=key,
        )
    return shape


def _make_run(
    ctx: _Context,
    shape: TransformerShape,
    tokens: int,
    *,
    compute_level: float | None = None,
    branch_points: Sequence[int] = (),
) -> RunSpec:
    spec = ctx.spec
    basis, method = spec.model.param_basis, spec.model.flops_method
    params, total, non_embedding = _declared(shape, basis)
    per_token = _flops_per_token(shape, params, method)
    config: dict[str, Any] = {
        "shape": json.loads(json.dumps(shape.__dict__)),
        "tokens": int(tokens),
        "corpus": spec.data.corpus,
        "tokenizer": spec.data.tokenizer,
        "seed": spec.seed,
        **spec.train.options(),
    }
    if ctx.schedule is not None:
        config["schedule"] = ctx.schedule
    if branch_points:
        config["branch_tokens"] = list(branch_points)
    byte_text = spec.data.tokenizer == "byte" and spec.data.corpus != "synthetic"
    if spec.data.vocab_size is not None and not byte_text:
        config["corpus_vocab_size"] = spec.data.vocab_size
    if spec.data.seed is not None:
        config["corpus_seed"] = spec.data.seed
    try:
        canonical = _canonical_config(config)
    except (TypeError, ValueError) as exc:
        # The trainer's own checks (warmup vs branches, option ranges) apply to the design.
        where = "design.branch_tokens" if branch_points else "train"
        raise SpecError(f"{where}: {exc}", field=where) from None
    key = run_key(canonical)
    branches = []
    for b in branch_points:
        end = _cooldown_end(b, ctx.cooldown_fraction, ctx.step_tokens)
        branches.append(BranchSpec(_branch_key(key, b), int(b), int(end), per_token * end))
    cost_tokens = tokens + sum(br.tokens - br.branch_tokens for br in branches)
    warmup, decay = _schedule_tokens(canonical)
    return RunSpec(
        key=key,
        config=json.dumps(canonical, sort_keys=True, separators=(",", ":")),
        shape=shape,
        seed=spec.seed,
        tokens=int(tokens),
        params=params,
        params_total=total,
        params_non_embedding=non_embedding,
        param_basis=basis,
        flops_method=method,
        flops=per_token * tokens,
        cost_flops=per_token * cost_tokens,
        compute_level=compute_level,
        branches=tuple(branches),
        schedule=canonical.get("schedule"),
        warmup_tokens=warmup,
        decay_tokens=decay,
    )


def _steps(ctx: _Context, tokens: float) -> int:
    return max(0, round(tokens / ctx.step_tokens))


def _isoflop(ctx: _Context) -> list[RunSpec]:
    d = ctx.spec.design
    assert d.sizes_per_level and d.width_decades is not None and d.tokens_per_param
    runs: list[RunSpec] = []
    for level in d.compute_levels():
        n_opt = math.sqrt(level / (FLOPS_PER_PARAM_TOKEN * d.tokens_per_param))
        if d.sizes_per_level == 1:
            offsets = np.zeros(1)
        else:
            offsets = np.linspace(-d.width_decades / 2, d.width_decades / 2, d.sizes_per_level)
        shapes: list[TransformerShape] = []
        for offset in offsets:
            target = n_opt * 10.0**offset
            try:
                shape = _snap(ctx, target, "design.width_decades")
            except SpecError as exc:
                ctx.notes.append(f"level {level:.3g} FLOP: skipped N≈{target:.3g}: {exc}")
                continue
            if shape in shapes:
                ctx.notes.append(
                    f"level {level:.3g} FLOP: N≈{target:.3g} snaps to a model already planned"
                )
                continue
            shapes.append(shape)
        kept = 0
        for shape in shapes:
            params = _declared(shape, ctx.spec.model.param_basis)[0]
            steps = _steps(
                ctx, level / _flops_per_token(shape, params, ctx.spec.model.flops_method)
            )
            if steps < d.min_steps:
                ctx.notes.append(
                    f"level {level:.3g} FLOP: N={params:,} skipped: {steps} steps < "
                    f"design.min_steps ({d.min_steps})"
                )
                continue
            runs.append(_make_run(ctx, shape, steps * ctx.step_tokens, compute_level=level))
            kept += 1
        if kept == 0:
            raise SpecError(
                f"design.flops: the level {level:.3g} FLOP leaves no model with at least "
                f"design.min_steps ({d.min_steps}) steps of {ctx.step_tokens} tokens; raise the "
                "level or lower train.batch_size",
                field="design.flops",
            )
    return runs


def _grid(ctx: _Context) -> list[RunSpec]:
    d = ctx.spec.design
    assert d.params and d.tokens
    shapes = []
    for i, target in enumerate(d.params):
        shape = _snap(ctx, target, f"design.params[{i}]")
        if shape in shapes:
            ctx.notes.append(f"design.params[{i}] ({target:.3g}) snaps to a model already planned")
            continue
        shapes.append(shape)
    lengths = []
    for j, tokens in enumerate(d.tokens):
        steps = _steps(ctx, tokens)
        if steps < d.min_steps:
            raise SpecError(
                f"design.tokens[{j}]: {tokens:.3g} tokens is {steps} steps of {ctx.step_tokens} "
                f"tokens, fewer than design.min_steps ({d.min_steps})",
                field="design.tokens",
            )
        if steps * ctx.step_tokens in lengths:
            ctx.notes.append(f"design.tokens[{j}] rounds to a length already planned")
            continue
        lengths.append(steps * ctx.step_tokens)
    return [_make_run(ctx, s, t) for s in shapes for t in lengths]


def _wsd(ctx: _Context) -> list[RunSpec]:
    d = ctx.spec.design
    assert d.params and d.tokens
    steps = _steps(ctx, d.tokens[0])
    if steps < d.min_steps:
        raise SpecError(
            f"design.tokens: {d.tokens[0]:.3g} tokens is {steps} steps of {ctx.step_tokens} "
            f"tokens, fewer than design.min_steps ({d.min_steps})",
            field="design.tokens",
        )
    total = steps * ctx.step_tokens
    # The trainer's WSD cooldown takes max(1, round(f·S)) of the S steps.
    stable_end = (steps - max(1, round(ctx.cooldown_fraction * steps))) * ctx.step_tokens
    raw = d.branch_tokens or tuple(f * total for f in d.branch_fractions or ())
    points: list[int] = []
    for i, b in enumerate(raw):
        key = "design.branch_tokens" if d.branch_tokens else "design.branch_fractions"
        snapped = _steps(ctx, b) * ctx.step_tokens
        if snapped < d.min_steps * ctx.step_tokens:
            raise SpecError(
                f"{key}[{i}]: the branch at {b:.3g} tokens is before design.min_steps",
                field=key,
            )
        if snapped > stable_end:
            raise SpecError(
                f"{key}[{i}]: the branch at {b:.3g} tokens is past the stable phase, which ends "
                f"at {stable_end} tokens (train.cooldown_fraction = {ctx.cooldown_fraction:g})",
                field=key,
            )
        if snapped not in points:
            points.append(snapped)
    shapes = []
    runs = []
    for i, target in enumerate(d.params):
        shape = _snap(ctx, target, f"design.params[{i}]")
        if shape in shapes:
            ctx.notes.append(f"design.params[{i}] ({target:.3g}) snaps to a model already planned")
            continue
        shapes.append(shape)
        runs.append(_make_run(ctx, shape, total, branch_points=sorted(points)))
    return runs


# --- time -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThroughputModel:
    """Training speed on one device, measured at a few model sizes.

    log(tokens/s) is interpolated linearly in log(FLOPs per token) between the measured
    sizes and held at the end values outside them (a small model is not faster than the
    smallest one measured: per-step overheads dominate there).

    Attributes
    ----------
    flops_per_token
        Per-operation training FLOPs per token of each measured shape (increasing).
    tokens_per_s
        Measured training throughput of each, with ``threads`` torch threads.
    device, threads
        Where it was measured.
    """

    flops_per_token: tuple[float, ...]
    tokens_per_s: tuple[float, ...]
    device: str
    threads: int

    def tokens_per_second(self, shape: TransformerShape) -> float:
        """Estimated training tokens per second of ``shape``."""
        x = math.log(flops_per_token(shape).per_operation)
        xs = np.log(np.asarray(self.flops_per_token, dtype=float))
        ys = np.log(np.asarray(self.tokens_per_s, dtype=float))
        return float(math.exp(np.interp(x, xs, ys)))

    def seconds(self, run: RunSpec) -> float:
        """Estimated wall time of ``run``: training (cooldowns included) plus evaluation.

        Evaluation is a forward pass only, a third of a training step's FLOPs (the backward
        pass costs twice the forward, Kaplan et al. 2020, §2.1), so ``eval_tokens`` cost as
        much as a third as many training tokens. The trainer evaluates every
        ``eval_interval_tokens`` (default: a tenth of the run), at the end, and after each
        branched cooldown.
        """
        speed = self.tokens_per_second(run.shape)
        config = run.config_dict
        step = int(config.get("batch_size") or 1) * run.shape.context_length
        steps = max(1, round(run.tokens / step))
        interval = config.get("eval_interval_tokens") or steps * step / 10
        every = max(1, round(interval / step))
        evals = math.ceil(steps / every) + len(run.branches)
        eval_tokens = int(config.get("eval_tokens") or 0)
        return (run.cost_tokens + evals * eval_tokens / 3.0) / speed


def makespan_s(durations_s: Sequence[float], workers: int) -> float:
    """Wall time of running jobs longest-first on ``workers`` identical workers.

    Longest-processing-time-first is within 4/3 of the optimum (Graham 1969), and it is
    the order the executors submit in, so the estimate matches what happens.
    """
    finish = [0.0] * max(1, workers)
    for d in sorted(durations_s, reverse=True):
        earliest = heapq.heappop(finish)
        heapq.heappush(finish, earliest + d)
    return max(finish)


# --- coverage ---------------------------------------------------------------------------

# Thresholds. Fewer than 3 sizes cannot locate a minimum along an IsoFLOP profile (a parabola
# needs 3 points), and Hoffmann et al. (2022) used 5 or more per level. The others are the
# judgement this module encodes: less than a decade of compute or of D/N leaves the fitted
# exponents resting on a short lever arm, and |corr(log N, log D)| above 0.95 makes the N and D
# terms of L(N, D) nearly collinear, so α and β trade off against each other.
MIN_SIZES_PER_LEVEL = 3
GOOD_SIZES_PER_LEVEL = 5
MIN_COMPUTE_DECADES = 1.0
MIN_RATIO_DECADES = 1.0
MAX_LOG_CORRELATION = 0.95
CHINCHILLA_PARAMETERS = 5  # E, A, B, α, β of L(N, D) = E + A/N^α + B/D^β


@dataclass(frozen=True)
class Coverage:
    """What a set of planned points can tell apart, checked before anything is trained.

    Attributes
    ----------
    points
        Points of the law (runs plus WSD cooldowns).
    compute_decades
        log10 of max/min compute over the points.
    sizes_per_level
        IsoFLOP only: distinct model sizes at each compute level.
    distinct_params, distinct_tokens
        Distinct N and D values.
    ratio_decades
        log10 of max/min tokens per parameter (D/N).
    log_correlation
        Pearson correlation of log N and log D over the points (``nan`` if undefined).
    warnings
        One line each, empty when the design is thick enough.
    """

    points: int
    compute_decades: float
    sizes_per_level: Mapping[float, int] | None
    distinct_params: int
    distinct_tokens: int
    ratio_decades: float
    log_correlation: float
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no warning was raised."""
        return not self.warnings


def check_coverage(runs: Sequence[RunSpec]) -> Coverage:
    """Check that ``runs`` can separate the N and D exponents; warn when they cannot.

    Parameters
    ----------
    runs
        Planned runs (WSD cooldowns count as points).

    Returns
    -------
    Coverage
    """
    n, dd, c = [], [], []
    for r in runs:
        n.append(r.params)
        dd.append(r.tokens)
        c.append(r.flops)
        for b in r.branches:
            n.append(r.params)
            dd.append(b.tokens)
            c.append(b.flops)
    warnings: list[str] = []
    if not n:
        return Coverage(0, 0.0, None, 0, 0, 0.0, float("nan"), ("no runs planned",))
    n_arr, d_arr, c_arr = (np.asarray(v, dtype=float) for v in (n, dd, c))
    compute_decades = float(np.log10(c_arr.max() / c_arr.min()))
    ratio = d_arr / n_arr
    ratio_decades = float(np.log10(ratio.max() / ratio.min()))
    ln, ld = np.log(n_arr), np.log(d_arr)
    corr = float(np.corrcoef(ln, ld)[0, 1]) if ln.std() > 0 and ld.std() > 0 else float("nan")
    distinct_n, distinct_d = len(set(n)), len(set(dd))

    levels: dict[float, int] | None = None
    if any(r.compute_level is not None for r in runs):
        levels = {}
        for r in runs:
            if r.compute_level is not None:
                levels[r.compute_level] = levels.get(r.compute_level, 0) + 1
        for level, count in sorted(levels.items()):
            if count < MIN_SIZES_PER_LEVEL:
                warnings.append(
                    f"level {level:.3g} FLOP has {count} size(s): at least {MIN_SIZES_PER_LEVEL} "
                    "are needed to locate its minimum"
                )
            elif count < GOOD_SIZES_PER_LEVEL:
                warnings.append(
                    f"level {level:.3g} FLOP has {count} sizes: {GOOD_SIZES_PER_LEVEL} or more "
                    "locate its minimum better"
                )
    if compute_decades < MIN_COMPUTE_DECADES:
        warnings.append(
            f"compute spans {compute_decades:.2f} decades (< {MIN_COMPUTE_DECADES:g}): exponents "
            "fitted on so short a range extrapolate poorly"
        )
    if distinct_n < 3 or distinct_d < 3:
        warnings.append(
            f"{distinct_n} distinct N and {distinct_d} distinct D: at least 3 of each are needed "
            "to fit separate N and D exponents"
        )
    if ratio_decades < MIN_RATIO_DECADES:
        warnings.append(
            f"D/N spans {ratio_decades:.2f} decades (< {MIN_RATIO_DECADES:g}): too narrow to "
            "separate the N and D exponents"
        )
    if math.isfinite(corr) and abs(corr) > MAX_LOG_CORRELATION:
        warnings.append(
            f"log N and log D are correlated at {corr:+.2f}: the N and D exponents will trade "
            "off against each other"
        )
    if len(n) < CHINCHILLA_PARAMETERS + 1:
        warnings.append(
            f"{len(n)} points for a law with {CHINCHILLA_PARAMETERS} parameters: no degrees of "
            "freedom left to judge the fit"
        )
    return Coverage(
        points=len(n),
        compute_decades=compute_decades,
        sizes_per_level=levels,
        distinct_params=distinct_n,
        distinct_tokens=distinct_d,
        ratio_decades=ratio_decades,
        log_correlation=corr,
        warnings=tuple(warnings),
    )


# --- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A sweep ready to run: the runs after the budget, their cost, and their coverage.

    Attributes
    ----------
    spec
        The spec it was planned from.
    runs
        Runs in submission order (longest first).
    total_flops
        Compute of every run, cooldowns included, by the sweep's counting method.
    est_wall_s
        Estimated wall time on ``workers`` workers (``None`` without a throughput model).
    trimmed
        Why runs were dropped to meet the budget (empty if none were).
    notes
        What snapping sizes and lengths to real models changed.
    """

    spec: SweepSpec
    runs: tuple[RunSpec, ...]
    total_flops: float
    workers: int
    est_wall_s: float | None
    throughput: ThroughputModel | None
    trimmed: tuple[str, ...]
    notes: tuple[str, ...]
    coverage: Coverage

    @property
    def points(self) -> int:
        """Points of the law the plan yields."""
        return sum(r.points for r in self.runs)

    def run_seconds(self, run: RunSpec) -> float | None:
        """Estimated wall time of one run (``None`` without a throughput model)."""
        return None if self.throughput is None else self.throughput.seconds(run)


def _est_wall(runs: Sequence[RunSpec], tp: ThroughputModel | None, workers: int) -> float | None:
    if tp is None:
        return None
    return makespan_s([tp.seconds(r) for r in runs], workers)


def plan_sweep(
    spec: SweepSpec,
    *,
    workers: int | None = None,
    throughput: ThroughputModel | Callable[[list[RunSpec]], ThroughputModel] | None = None,
    vocab_size: int | None = None,
) -> Plan:
    """Design the sweep, apply its budget, order the runs and check coverage.

    Parameters
    ----------
    spec
        A validated spec.
    workers
        Parallel workers (default: the spec's ``execution.workers``); sets the wall estimate.
    throughput
        A measured :class:`ThroughputModel`, or a function that measures one for the
        designed runs (called only once the runs are known). Needed for a wall-clock budget.
    vocab_size
        The corpus's vocabulary size (read from the corpus when ``None``).

    Raises
    ------
    BudgetError
        The design is over budget and ``budget.on_over = "refuse"``, trimming leaves nothing,
        or a wall-clock budget was given without a throughput model.
    SpecError
        A size or length that cannot be built.
    """
    workers = workers or spec.execution.workers
    runs, notes = design_runs(spec, vocab_size=vocab_size)
    budget = spec.budget
    measure = throughput if callable(throughput) else None
    tp = None if callable(throughput) else throughput
    if budget.wall_clock_s is not None:
        if measure is not None:
            tp = measure(runs)  # needed to apply the budget at all
        if tp is None:
            raise BudgetError(
                "budget.wall_clock_s: a wall-clock budget needs a measured throughput; plan "
                "it with the probe on (the default of `scalinglab sweep plan`)",
                field="budget.wall_clock_s",
            )
    trimmed: list[str] = []

    def over(rs: Sequence[RunSpec]) -> str | None:
        if budget.flops is not None:
            need = sum(r.cost_flops for r in rs)
            if need > budget.flops:
                return f"needs {need:.3g} FLOP, over budget.flops = {budget.flops:.3g}"
        if budget.wall_clock_s is not None:
            need_s = _est_wall(rs, tp, workers) or 0.0
            if need_s > budget.wall_clock_s:
                return (
                    f"needs an estimated {need_s:,.0f} s on {workers} worker(s), over "
                    f"budget.wall_clock_s = {budget.wall_clock_s:,.0f}"
                )
        return None

    reason = over(runs)
    if reason is not None:
        if budget.on_over == "refuse":
            key = "budget.flops" if budget.flops is not None else "budget.wall_clock_s"
            raise BudgetError(
                f'{key}: the design {reason}; shrink the design or set budget.on_over = "trim"',
                field=key,
            )
        while reason is not None and runs:
            runs, dropped = _trim_once(spec, runs)
            trimmed.append(f"{reason}: dropped {dropped}")
            reason = over(runs)
        if not runs:
            raise BudgetError(
                f"budget: even the cheapest part of the design {trimmed[-1]}", field="budget"
            )
    if tp is None and measure is not None:  # measured only once the design is known to fit
        tp = measure(runs)
    # Longest first: the executors submit in this order, which keeps the makespan short.
    order = sorted(runs, key=lambda r: (-(tp.seconds(r) if tp else r.cost_flops), r.key))
    return Plan(
        spec=spec,
        runs=tuple(order),
        total_flops=sum(r.cost_flops for r in runs),
        workers=workers,
        est_wall_s=_est_wall(order, tp, workers),
        throughput=tp,
        trimmed=tuple(trimmed),
        notes=tuple(notes),
        coverage=check_coverage(order),
    )


def _trim_once(spec: SweepSpec, runs: list[RunSpec]) -> tuple[list[RunSpec], str]:
    """Drop the most expensive coherent part of a design: a level, a size, or one run."""
    if spec.design.kind == "isoflop":
        top = max(r.compute_level or 0.0 for r in runs)
        kept = [r for r in runs if r.compute_level != top]
        return kept, f"the level {top:.3g} FLOP ({len(runs) - len(kept)} runs)"
    if spec.design.kind == "wsd":
        largest = max(runs, key=lambda r: r.params)
        kept = [r for r in runs if r is not largest]
        return kept, f"the size N={largest.params:,} ({largest.points} points)"
    dearest = max(runs, key=lambda r: r.cost_flops)
    kept = [r for r in runs if r is not dearest]
    return (
        kept,
        f"the run N={dearest.params:,}, D={dearest.tokens:,} ({dearest.cost_flops:.3g} FLOP)",
    )


def with_throughput(plan: Plan, throughput: ThroughputModel, workers: int | None = None) -> Plan:
    """The same plan re-timed for another throughput model or worker count."""
    workers = workers or plan.workers
    return replace(
        plan,
        workers=workers,
        throughput=throughput,
        est_wall_s=_est_wall(plan.runs, throughput, workers),
    )
