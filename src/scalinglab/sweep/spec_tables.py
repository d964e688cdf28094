"""The run tables of a sweep spec: ``[data]``, ``[model]``, ``[train]``, ``[budget]`` and
``[execution]`` (what each run trains on and with, and how the sweep is run and capped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scalinglab.sweep.command import COMMAND_KEYS
from scalinglab.sweep.spec_checks import (
    as_boolean,
    as_bytes,
    as_choice,
    as_integer,
    as_number,
    as_string,
    check_keys,
    key_error,
)
from scalinglab.sweep.spec_values import (
    FLOPS_METHODS,
    MLPS,
    ON_OVER,
    PARAM_BASES,
    POSITIONALS,
    SHAPE_OPTIONS,
    BudgetSpec,
    DataSpec,
    ExecutionSpec,
    ModelSpec,
    TrainSpec,
)
from scalinglab.train.config import PRECISIONS
from scalinglab.train.corpus import TOKENIZERS
from scalinglab.train.schedule import SCHEDULES

__all__ = ["parse_budget", "parse_data", "parse_execution", "parse_model", "parse_train"]

_DATA = ("corpus", "tokenizer", "vocab_size", "seed")
_MODEL = ("context_length", "param_basis", "flops_method", *SHAPE_OPTIONS)
_TRAIN = (*(f.name for f in TrainSpec.__dataclass_fields__.values()), *COMMAND_KEYS)
_BUDGET = ("flops", "wall_clock_s", "on_over")
_EXECUTION = (
    "workers",
    "max_retries",
    "executor",
    "gpus_per_run",
    "cpus_per_run",
    "memory_per_run",
)


def parse_data(t: dict[str, Any], *, command: bool = False) -> DataSpec:
    """The validated ``[data]`` table; a command run (``command``) gives only ``vocab_size``."""
    check_keys("data", t, _DATA)
    if command:  # the command reads its own data: only the vocabulary matters (for counting N)
        for key in t:
            if key != "vocab_size":
                raise key_error(
                    f"data.{key}", "a command run reads its own data; give vocab_size only"
                )
        if "vocab_size" not in t:
            raise key_error(
                "data.vocab_size",
                "missing: a command run needs its trainer's vocabulary size to count parameters",
            )
        return DataSpec(vocab_size=as_integer("data.vocab_size", t["vocab_size"], minimum=2))
    vocab = t.get("vocab_size")
    corpus = as_string("data.corpus", t.get("corpus", "stdlib"))
    builtin = corpus in ("stdlib", "synthetic") or corpus.startswith("synthetic:")
    if not builtin and not Path(corpus).expanduser().exists():
        # Refused at plan time: otherwise every run of the sweep fails (and is retried) on it.
        raise key_error("data.corpus", f"no such file or folder {corpus!r} (or stdlib, synthetic)")
    tokenizer = as_choice("data.tokenizer", t.get("tokenizer", "byte"), TOKENIZERS)
    if vocab is not None:
        vocab = as_integer("data.vocab_size", vocab, minimum=2)
        # The synthetic source's alphabet is its vocabulary, whatever the tokenizer says.
        if tokenizer == "byte" and corpus != "synthetic" and vocab != 256:
            raise key_error("data.vocab_size", f"the byte tokenizer has 256 tokens, got {vocab}")
    seed = t.get("seed")
    return DataSpec(
        corpus=corpus,
        tokenizer=tokenizer,
        vocab_size=vocab,
        seed=None if seed is None else as_integer("data.seed", seed, minimum=0),
    )


def parse_model(t: dict[str, Any]) -> ModelSpec:
    """The validated ``[model]`` table: the context, the parameter basis and shape options."""
    check_keys("model", t, _MODEL)
    optional: dict[str, Any] = {}
    for key in ("tied_embeddings", "bias"):
        if key in t:
            optional[key] = as_boolean(f"model.{key}", t[key])
    if "positional" in t:
        optional["positional"] = as_choice("model.positional", t["positional"], POSITIONALS)
    if "mlp" in t:
        optional["mlp"] = as_choice("model.mlp", t["mlp"], MLPS)
    for key in ("aspect", "aspect_min", "aspect_max"):
        if key in t:
            optional[key] = as_number(f"model.{key}", t[key])
    return ModelSpec(
        context_length=as_integer("model.context_length", t.get("context_length", 64), minimum=2),
        param_basis=as_choice(
            "model.param_basis", t.get("param_basis", "non_embedding"), PARAM_BASES
        ),
        flops_method=as_choice("model.flops_method", t.get("flops_method", "6nd"), FLOPS_METHODS),
        **optional,
    )


def parse_train(t: dict[str, Any]) -> TrainSpec:
    """The validated ``[train]`` table: the TrainConfig fields a sweep sets for every run."""
    check_keys("train", t, _TRAIN)
    out: dict[str, Any] = {}
    for key in ("batch_size", "eval_tokens", "lr_ref_width"):
        if key in t:
            out[key] = as_integer(f"train.{key}", t[key])
    if "warmup_tokens" in t:
        out["warmup_tokens"] = as_integer("train.warmup_tokens", t["warmup_tokens"], minimum=0)
    for key in ("eval_interval_tokens", "log_interval_tokens"):
        if key in t:
            out[key] = as_integer(f"train.{key}", t[key])
    for key in ("beta1", "beta2", "dropout"):
        if key in t:
            value = as_number(f"train.{key}", t[key], strict=False)
            if value >= 1:
                raise key_error(f"train.{key}", f"must be in [0, 1), got {value!r}")
            out[key] = value
    if "compile" in t:
        out["compile"] = as_boolean("train.compile", t["compile"])
    for key in ("lr", "grad_clip"):
        if key in t:
            out[key] = as_number(f"train.{key}", t[key])
    if "weight_decay" in t:
        out["weight_decay"] = as_number("train.weight_decay", t["weight_decay"], strict=False)
    if "min_lr_ratio" in t:
        value = as_number("train.min_lr_ratio", t["min_lr_ratio"], strict=False)
        if value > 1:
            raise key_error("train.min_lr_ratio", f"must be in [0, 1], got {t['min_lr_ratio']!r}")
        out["min_lr_ratio"] = value
    if "cooldown_fraction" in t:
        value = as_number("train.cooldown_fraction", t["cooldown_fraction"])
        if value >= 1:
            raise key_error("train.cooldown_fraction", f"must be in (0, 1), got {value!r}")
        out["cooldown_fraction"] = value
    if "schedule" in t:
        out["schedule"] = as_choice("train.schedule", t["schedule"], SCHEDULES)
    if "device" in t:
        out["device"] = as_string("train.device", t["device"])
    if "precision" in t:
        out["precision"] = as_choice("train.precision", t["precision"], PRECISIONS)
    return TrainSpec(**out)


def parse_budget(t: dict[str, Any]) -> BudgetSpec:
    """The validated ``[budget]`` table: FLOPs or wall-clock seconds, and what to do over."""
    check_keys("budget", t, _BUDGET)
    if "flops" in t and "wall_clock_s" in t:
        raise key_error("budget", "give flops or wall_clock_s, not both")
    return BudgetSpec(
        flops=None if "flops" not in t else as_number("budget.flops", t["flops"]),
        wall_clock_s=None
        if "wall_clock_s" not in t
        else as_number("budget.wall_clock_s", t["wall_clock_s"]),
        on_over=as_choice("budget.on_over", t.get("on_over", "refuse"), ON_OVER),
    )


def parse_execution(t: dict[str, Any]) -> ExecutionSpec:
    """The validated ``[execution]`` table: workers, retries, executor and resources."""
    check_keys("execution", t, _EXECUTION)
    cpus = t.get("cpus_per_run")
    memory = t.get("memory_per_run")
    return ExecutionSpec(
        workers=as_integer("execution.workers", t.get("workers", 1)),
        max_retries=as_integer("execution.max_retries", t.get("max_retries", 2), minimum=0),
        executor=as_choice("execution.executor", t.get("executor", "local"), ("local", "ray")),
        gpus_per_run=as_integer("execution.gpus_per_run", t.get("gpus_per_run", 0), minimum=0),
        cpus_per_run=None if cpus is None else as_number("execution.cpus_per_run", cpus),
        memory_per_run=None if memory is None else as_bytes("execution.memory_per_run", memory),
    )
