"""Sweep designs: which (N, D) runs to train, snapped to real models and whole steps.

Three designs, each a function of a validated :class:`~scalinglab.sweep.spec.SweepSpec`:

- **IsoFLOP** (Hoffmann et al. 2022, approach 2): at each compute level C, model sizes
  spaced evenly in log N around the expected optimum N* = sqrt(C / (6·r)), r the expected
  tokens per parameter; each size trains D = C / (FLOPs per token) tokens.
- **Grid**: every N in a list × every D in a list.
- **WSD reuse** (Hägele et al. 2024): one warmup-stable-decay run per size, with extra
  cooldowns branched from its stable phase; every cooldown is a point of the law at the
  price of its cooldown only.
- **Points**: a list of (N, D) pairs, one run each (the runs ``sweep suggest`` chooses); a
  point may carry its own WSD branch points, so one trunk and its cooldowns are one run.

Every target N is snapped to a real model by the trainer's shape rule and D to whole optimiser
steps, so the planned counts are exactly the trained ones. Applying the budget and checking
coverage come after (:mod:`.budget`, :mod:`.coverage`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

from scalinglab.counting import (
    FLOPS_PER_PARAM_TOKEN,
    TransformerShape,
    count_params,
    flops_per_token,
)
from scalinglab.sweep.command import command_run_config
from scalinglab.sweep.runspec import BranchSpec, RunSpec, branch_key, run_key
from scalinglab.sweep.spec import SpecError, SweepSpec
from scalinglab.train.config import TrainConfig
from scalinglab.train.schedule import branch_total_steps
from scalinglab.train.shapes import shape_for_params

__all__ = ["design_runs", "resolve_vocab_size"]


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
    elif spec.design.kind == "points":
        runs = _points(ctx)
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
    resume: tuple[int, int] | None = None,
) -> RunSpec:
    spec = ctx.spec
    basis, method = spec.model.param_basis, spec.model.flops_method
    params, total, non_embedding = _declared(shape, basis)
    per_token = _flops_per_token(shape, params, method)
    warmup: int | None = None
    decay: int | None = None
    if spec.command is not None:
        canonical = _command_config(ctx, shape, params, tokens)
    else:
        canonical = _trainer_config(ctx, shape, tokens, branch_points)
        if resume is not None:  # the warmup of the run whose stable phase it continues
            canonical = _canonical_config({**canonical, "warmup_tokens": resume[0]})
        warmup, decay = _schedule_tokens(canonical)
    key = run_key(canonical)
    branches = []
    for b in branch_points:
        end = _cooldown_end(b, ctx.cooldown_fraction, ctx.step_tokens)
        branches.append(BranchSpec(branch_key(key, b), int(b), int(end), per_token * end))
    resume_tokens = 0 if resume is None else resume[1]
    cost_tokens = tokens + sum(br.tokens - br.branch_tokens for br in branches) - resume_tokens
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
        resume_tokens=resume_tokens,
    )


def _trainer_config(
    ctx: _Context, shape: TransformerShape, tokens: int, branch_points: Sequence[int]
) -> dict[str, Any]:
    """The canonical config of a run of scalinglab's trainer."""
    spec = ctx.spec
    config: dict[str, Any] = {
        "shape": json.loads(json.dumps(shape.__dict__)),
        "tokens": int(tokens),
        "corpus": spec.data.corpus,
        "tokenizer": spec.data.tokenizer,
        "seed": spec.seed,
        **spec.train.options(),
    }
    if spec.train.lr_ref_width is not None:
        lr = spec.train.lr if spec.train.lr is not None else _trainer_defaults()["lr"]
        config["lr"] = lr * spec.train.lr_ref_width / shape.d_model
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
        return _canonical_config(config)
    except (TypeError, ValueError) as exc:
        # The trainer's own checks (warmup vs branches, option ranges) apply to the design.
        where = "design.branch_tokens" if branch_points else "train"
        raise SpecError(f"{where}: {exc}", field=where) from None


def _command_config(
    ctx: _Context, shape: TransformerShape, params: int, tokens: int
) -> dict[str, Any]:
    """The config of a command run: the same shape and tokens, the command that trains them."""
    spec = ctx.spec
    assert spec.command is not None
    return command_run_config(
        spec.command,
        shape=json.loads(json.dumps(shape.__dict__)),
        params=params,
        tokens=int(tokens),
        batch_size=ctx.step_tokens // spec.model.context_length,
        lr=spec.train.lr,
        seed=spec.seed,
        device="cuda" if spec.execution.gpus_per_run else (spec.train.device or "cpu"),
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


def _distinct_shapes(ctx: _Context, params: Sequence[float]) -> list[TransformerShape]:
    """``design.params`` snapped to real models, each model once (a repeat is noted)."""
    shapes: list[TransformerShape] = []
    for i, target in enumerate(params):
        shape = _snap(ctx, target, f"design.params[{i}]")
        if shape in shapes:
            ctx.notes.append(f"design.params[{i}] ({target:.3g}) snaps to a model already planned")
            continue
        shapes.append(shape)
    return shapes


def _grid(ctx: _Context) -> list[RunSpec]:
    d = ctx.spec.design
    assert d.params and d.tokens
    shapes = _distinct_shapes(ctx, d.params)
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


def _points(ctx: _Context) -> list[RunSpec]:
    d = ctx.spec.design
    assert d.points
    shapes: dict[float, TransformerShape] = {}  # many points share a size: snap it once
    runs: list[RunSpec] = []
    seen: set[tuple[TransformerShape, int, tuple[int, ...]]] = set()
    for i, point in enumerate(d.points):
        target, tokens = point[0], point[1]
        key = f"design.points[{i}]"
        if target not in shapes:
            shapes[target] = _snap(ctx, target, key)
        steps = _steps(ctx, tokens)
        if steps < d.min_steps:
            raise SpecError(
                f"{key}: {tokens:.3g} tokens is {steps} steps of {ctx.step_tokens} "
                f"tokens, fewer than design.min_steps ({d.min_steps})",
                field="design.points",
            )
        branches: tuple[int, ...] = ()
        resume = None
        if len(point) >= 3:
            if ctx.schedule != "wsd":
                raise SpecError(
                    f"{key}[2]: cooldown branches need train.schedule = 'wsd' (so does a "
                    f"resumed run), got {ctx.schedule!r}",
                    field="train.schedule",
                )
            branches = tuple(_branch_points(ctx, point[2], steps, f"{key}[2]"))
        if len(point) == 4:
            resume = _resume_point(ctx, point[3], steps, branches, f"{key}[3]")
        run = (shapes[target], steps * ctx.step_tokens, branches)
        if run in seen:
            ctx.notes.append(f"{key} snaps to a run already planned")
            continue
        seen.add(run)
        runs.append(_make_run(ctx, run[0], run[1], branch_points=branches, resume=resume))
    return runs


def _resume_point(
    ctx: _Context, resume: tuple[int, int], steps: int, branches: Sequence[int], key: str
) -> tuple[int, int]:
    """A resumed point's (warmup, resume) tokens, checked against the run of ``steps`` steps:
    whole steps, the checkpoint at or before its cooldown start and every branch point."""
    warmup, start = resume
    cooldown_start = (steps - max(1, round(ctx.cooldown_fraction * steps))) * ctx.step_tokens
    problem = None
    if warmup % ctx.step_tokens or start % ctx.step_tokens:
        problem = f"is not a whole number of steps of {ctx.step_tokens} tokens"
    elif start > cooldown_start:
        problem = f"is past the run's cooldown start ({cooldown_start} tokens)"
    elif branches and branches[0] < start:
        problem = f"is past the branch point {branches[0]}, which it cannot reach"
    if problem:
        where = f"{key}.resume_tokens"
        raise SpecError(f"{where}: ({warmup}, {start}) {problem}", field=where)
    return warmup, start


def _branch_points(ctx: _Context, raw: Sequence[float], steps: int, key: str) -> list[int]:
    """Branch points in tokens snapped to whole steps, each checked to lie in the stable phase
    of a WSD run of ``steps`` steps; sorted, repeats merged."""
    # The trainer's WSD cooldown takes max(1, round(f·S)) of the S steps.
    stable_end = (steps - max(1, round(ctx.cooldown_fraction * steps))) * ctx.step_tokens
    points: list[int] = []
    for i, b in enumerate(raw):
        snapped = _steps(ctx, b) * ctx.step_tokens
        if snapped < ctx.spec.design.min_steps * ctx.step_tokens:
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
    return sorted(points)


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
    raw = d.branch_tokens or tuple(f * steps * ctx.step_tokens for f in d.branch_fractions or ())
    key = "design.branch_tokens" if d.branch_tokens else "design.branch_fractions"
    points = _branch_points(ctx, raw, steps, key)
    return [
        _make_run(ctx, shape, steps * ctx.step_tokens, branch_points=points)
        for shape in _distinct_shapes(ctx, d.params)
    ]
