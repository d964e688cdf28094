"""The sweep spec: a TOML file that says what to train, how, on what budget, with which design.

A spec is read with :mod:`tomllib` and validated key by key before anything is planned or run;
every error names the dotted key (``design.sizes_per_level``) and what is allowed, so a typo
costs one line of output instead of an hour of training.

Layout (every table but ``[design]`` is optional; omitted keys take the defaults shown)::

    [sweep]
    name = "isoflop-stdlib"    # names the sweep in the store; default: the file's stem
    seed = 0                   # every run of the sweep trains with this seed
    store = "scalinglab.db"    # relative to the working directory

    [data]
    corpus = "stdlib"          # "stdlib" | "synthetic" | a path to a text file or folder
    tokenizer = "byte"         # "byte" | "char" | "bpe" | "symbol" (synthetic)
    vocab_size = 256           # the models' vocabulary (bpe: the one to learn; synthetic:
                               # the alphabet); byte-level text has 256
    seed = 0                   # the synthetic corpus's seed

    [model]
    context_length = 64
    param_basis = "non_embedding"   # which count is N: "non_embedding" (Kaplan) or "total"
    flops_method = "6nd"            # "6nd": 6·N·D with N as declared; "per_operation":
                                    # Hoffmann et al. (2022), App. F
    # shape options passed to the trainer's shape rule: tied_embeddings, positional, mlp, bias,
    # aspect, aspect_min, aspect_max (d_model / n_layer)

    [train]                    # anything TrainConfig takes; unset keys keep the trainer's defaults
    batch_size = 16
    lr = 3e-3
    lr_ref_width = 64          # optional: each run's lr is lr × lr_ref_width / d_model
    schedule = "cosine"
    # or, to run any trainer: command = "python train.py --n_layer={n_layer} ...", with env,
    # workdir, time_limit_s, loss_regex, resume_from, resume_args (scalinglab.sweep.command)

    [budget]
    flops = 1e14               # total training FLOPs, or:
    wall_clock_s = 600         # estimated from the device's measured throughput
    on_over = "refuse"         # or "trim": drop the most expensive part until the design fits

    [execution]
    workers = 2                # parallel runs (threads split evenly over the cores)
    max_retries = 2
    gpus_per_run = 0           # GPUs each run gets (Ray task resources; CUDA_VISIBLE_DEVICES)
    cpus_per_run = 1           # Ray: CPUs each run asks for (default: its threads)
    memory_per_run = "8GiB"    # Ray: memory each run asks for (bytes, or "512MiB", "8GiB")

    [design]
    kind = "isoflop"           # "isoflop" | "grid" | "wsd" | "points"; see scalinglab.sweep.design
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalinglab.sweep.command import COMMAND_KEYS, check_runner, command_from_train
from scalinglab.sweep.spec_values import (
    DESIGN_KINDS,
    FLOPS_METHODS,
    MLPS,
    ON_OVER,
    PARAM_BASES,
    POSITIONALS,
    SHAPE_OPTIONS,
    BudgetSpec,
    DataSpec,
    DesignSpec,
    ExecutionSpec,
    ModelSpec,
    SpecError,
    SweepSpec,
    TrainSpec,
)
from scalinglab.train.config import PRECISIONS
from scalinglab.train.corpus import TOKENIZERS
from scalinglab.train.schedule import SCHEDULES

# The value types (SweepSpec, SpecError, ...) are spec_values's; they are importable from here too.
__all__ = ["load_spec", "parse_spec"]

# --- value checks: each returns the clean value or raises SpecError naming the key ----------


def _fail(key: str, message: str) -> SpecError:
    return SpecError(f"{key}: {message}", field=key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(key: str, value: Any, *, minimum: float | None = 0.0, strict: bool = True) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise _fail(key, f"must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else "≥"
        raise _fail(key, f"must be {relation} {minimum:g}, got {value!r}")
    return float(value)


def _integer(key: str, value: Any, *, minimum: int = 1) -> int:
    # TOML writes large counts as floats (1e7); accept them when they are whole numbers.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(key, f"must be a whole number ≥ {minimum}, got {value!r}")
    if value < minimum:
        raise _fail(key, f"must be a whole number ≥ {minimum}, got {value!r}")
    return value


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(key, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, f"must be a non-empty string, got {value!r}")
    return value


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {value!r}")
    return value


# Designs are capped before they are built: snapping a shape for each of 100,000 sizes runs
# for minutes, and no machine this targets trains that many runs.
MAX_LIST = 1_000
MAX_DESIGN_RUNS = 10_000


def _number_list(key: str, value: Any, *, integer: bool = False) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(key, f"must be a non-empty list of positive numbers, got {value!r:.80}")
    if len(value) > MAX_LIST:
        raise _fail(key, f"at most {MAX_LIST:,} values, got {len(value):,}")
    out = []
    for i, item in enumerate(value):
        item_key = f"{key}[{i}]"
        out.append(_integer(item_key, item) if integer else _number(item_key, item))
    if len(set(out)) != len(out):
        raise _fail(key, f"has repeated values: {value!r:.120}")
    return tuple(sorted(out))


def _table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(key, f"must be a table ([{key}]), got {type(value).__name__}")
    return value


def _check_keys(table: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in given:
        if name not in allowed:
            near = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            where = f"{table}.{name}" if table else name
            raise _fail(where, f"unknown key{hint}; allowed: {', '.join(allowed)}")


# --- the spec -----------------------------------------------------------------------------


_TOP = ("sweep", "data", "model", "train", "budget", "execution", "design")
_SWEEP = ("name", "seed", "store")
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
_DESIGN_COMMON = ("kind", "min_steps")
_DESIGN_KEYS = {
    "isoflop": (
        "flops",
        "flops_min",
        "flops_max",
        "levels",
        "sizes_per_level",
        "width_decades",
        "tokens_per_param",
    ),
    "grid": ("params", "tokens"),
    "wsd": ("params", "tokens", "branch_tokens", "branch_fractions"),
    "points": ("points",),
}


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec from a TOML file.

    Parameters
    ----------
    path
        The ``.toml`` file. The sweep's name defaults to the file's stem.

    Raises
    ------
    SpecError
        The file is missing or not TOML, or a key is unknown or has a bad value; the
        message names the key and what is allowed.
    """
    if not isinstance(path, str | os.PathLike):
        raise SpecError(
            f"load_spec: path must be a file path, got {type(path).__name__}", field="path"
        )
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            f"{path}: cannot read the spec ({exc.strerror or exc})", field="spec"
        ) from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a TOML spec (not UTF-8 text)", field="spec") from None
    return parse_spec(text, default_name=path.stem)


def parse_spec(text: str | Mapping[str, Any], *, default_name: str = "sweep") -> SweepSpec:
    """Validate a spec given as TOML text or as an already parsed mapping.

    Raises
    ------
    SpecError
        Naming the first bad key and what is allowed.
    """
    if isinstance(text, str):
        try:
            raw: Mapping[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"not valid TOML: {exc}", field="spec") from None
    else:
        raw = text
    _check_keys("", raw, _TOP)
    if "design" not in raw:
        raise _fail("design", "missing: a spec needs a [design] table with a kind")

    sweep = _table("sweep", raw.get("sweep", {}))
    _check_keys("sweep", sweep, _SWEEP)
    name = _string("sweep.name", sweep.get("name", default_name))
    seed = _integer("sweep.seed", sweep.get("seed", 0), minimum=0)
    store = _string("sweep.store", sweep.get("store", "scalinglab.db"))

    train = _table("train", raw.get("train", {}))
    spec = SweepSpec(
        name=name,
        seed=seed,
        store=store,
        data=_data(_table("data", raw.get("data", {})), command="command" in train),
        model=_model(_table("model", raw.get("model", {}))),
        train=_train(train),
        budget=_budget(_table("budget", raw.get("budget", {}))),
        execution=_execution(_table("execution", raw.get("execution", {}))),
        design=_design(_table("design", raw["design"])),
        command=command_from_train(train),
    )
    check_runner(spec)
    return spec


def _data(t: dict[str, Any], *, command: bool = False) -> DataSpec:
    _check_keys("data", t, _DATA)
    if command:  # the command reads its own data: only the vocabulary matters (for counting N)
        for key in t:
            if key != "vocab_size":
                raise _fail(f"data.{key}", "a command run reads its own data; give vocab_size only")
        if "vocab_size" not in t:
            raise _fail(
                "data.vocab_size",
                "missing: a command run needs its trainer's vocabulary size to count parameters",
            )
        return DataSpec(vocab_size=_integer("data.vocab_size", t["vocab_size"], minimum=2))
    vocab = t.get("vocab_size")
    corpus = _string("data.corpus", t.get("corpus", "stdlib"))
    builtin = corpus in ("stdlib", "synthetic") or corpus.startswith("synthetic:")
    if not builtin and not Path(corpus).expanduser().exists():
        # Refused at plan time: otherwise every run of the sweep fails (and is retried) on it.
        raise _fail("data.corpus", f"no such file or folder {corpus!r} (or stdlib, synthetic)")
    tokenizer = _choice("data.tokenizer", t.get("tokenizer", "byte"), TOKENIZERS)
    if vocab is not None:
        vocab = _integer("data.vocab_size", vocab, minimum=2)
        # The synthetic source's alphabet is its vocabulary, whatever the tokenizer says.
        if tokenizer == "byte" and corpus != "synthetic" and vocab != 256:
            raise _fail("data.vocab_size", f"the byte tokenizer has 256 tokens, got {vocab}")
    seed = t.get("seed")
    return DataSpec(
        corpus=corpus,
        tokenizer=tokenizer,
        vocab_size=vocab,
        seed=None if seed is None else _integer("data.seed", seed, minimum=0),
    )


def _model(t: dict[str, Any]) -> ModelSpec:
    _check_keys("model", t, _MODEL)
    optional: dict[str, Any] = {}
    for key in ("tied_embeddings", "bias"):
        if key in t:
            optional[key] = _boolean(f"model.{key}", t[key])
    if "positional" in t:
        optional["positional"] = _choice("model.positional", t["positional"], POSITIONALS)
    if "mlp" in t:
        optional["mlp"] = _choice("model.mlp", t["mlp"], MLPS)
    for key in ("aspect", "aspect_min", "aspect_max"):
        if key in t:
            optional[key] = _number(f"model.{key}", t[key])
    return ModelSpec(
        context_length=_integer("model.context_length", t.get("context_length", 64), minimum=2),
        param_basis=_choice(
            "model.param_basis", t.get("param_basis", "non_embedding"), PARAM_BASES
        ),
        flops_method=_choice("model.flops_method", t.get("flops_method", "6nd"), FLOPS_METHODS),
        **optional,
    )


def _train(t: dict[str, Any]) -> TrainSpec:
    _check_keys("train", t, _TRAIN)
    out: dict[str, Any] = {}
    for key in ("batch_size", "eval_tokens", "lr_ref_width"):
        if key in t:
            out[key] = _integer(f"train.{key}", t[key])
    if "warmup_tokens" in t:
        out["warmup_tokens"] = _integer("train.warmup_tokens", t["warmup_tokens"], minimum=0)
    for key in ("eval_interval_tokens", "log_interval_tokens"):
        if key in t:
            out[key] = _integer(f"train.{key}", t[key])
    for key in ("beta1", "beta2", "dropout"):
        if key in t:
            value = _number(f"train.{key}", t[key], strict=False)
            if value >= 1:
                raise _fail(f"train.{key}", f"must be in [0, 1), got {value!r}")
            out[key] = value
    if "compile" in t:
        out["compile"] = _boolean("train.compile", t["compile"])
    for key in ("lr", "grad_clip"):
        if key in t:
            out[key] = _number(f"train.{key}", t[key])
    if "weight_decay" in t:
        out["weight_decay"] = _number("train.weight_decay", t["weight_decay"], strict=False)
    if "min_lr_ratio" in t:
        value = _number("train.min_lr_ratio", t["min_lr_ratio"], strict=False)
        if value > 1:
            raise _fail("train.min_lr_ratio", f"must be in [0, 1], got {t['min_lr_ratio']!r}")
        out["min_lr_ratio"] = value
    if "cooldown_fraction" in t:
        value = _number("train.cooldown_fraction", t["cooldown_fraction"])
        if value >= 1:
            raise _fail("train.cooldown_fraction", f"must be in (0, 1), got {value!r}")
        out["cooldown_fraction"] = value
    if "schedule" in t:
        out["schedule"] = _choice("train.schedule", t["schedule"], SCHEDULES)
    if "device" in t:
        out["device"] = _string("train.device", t["device"])
    if "precision" in t:
        out["precision"] = _choice("train.precision", t["precision"], PRECISIONS)
    return TrainSpec(**out)


def _budget(t: dict[str, Any]) -> BudgetSpec:
    _check_keys("budget", t, _BUDGET)
    if "flops" in t and "wall_clock_s" in t:
        raise _fail("budget", "give flops or wall_clock_s, not both")
    return BudgetSpec(
        flops=None if "flops" not in t else _number("budget.flops", t["flops"]),
        wall_clock_s=None
        if "wall_clock_s" not in t
        else _number("budget.wall_clock_s", t["wall_clock_s"]),
        on_over=_choice("budget.on_over", t.get("on_over", "refuse"), ON_OVER),
    )


def _execution(t: dict[str, Any]) -> ExecutionSpec:
    _check_keys("execution", t, _EXECUTION)
    cpus = t.get("cpus_per_run")
    memory = t.get("memory_per_run")
    return ExecutionSpec(
        workers=_integer("execution.workers", t.get("workers", 1)),
        max_retries=_integer("execution.max_retries", t.get("max_retries", 2), minimum=0),
        executor=_choice("execution.executor", t.get("executor", "local"), ("local", "ray")),
        gpus_per_run=_integer("execution.gpus_per_run", t.get("gpus_per_run", 0), minimum=0),
        cpus_per_run=None if cpus is None else _number("execution.cpus_per_run", cpus),
        memory_per_run=None if memory is None else _bytes("execution.memory_per_run", memory),
    )


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTE_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def _bytes(key: str, value: Any) -> int:
    """A byte count: a number, or a string with a unit ("512MiB", "8 GB")."""
    if isinstance(value, str):
        number, unit = value.strip(), ""
        while number and number[-1].isalpha():
            number, unit = number[:-1], number[-1] + unit
        try:
            value = float(number) * _BYTE_UNITS[unit.lower()]
        except (ValueError, KeyError):
            example = '4e9, "512MiB" or "8GiB"'
            raise _fail(key, f"must be a byte count like {example}, got {value!r}") from None
    return int(_number(key, value))


def _design(t: dict[str, Any]) -> DesignSpec:
    kind = _choice("design.kind", t.get("kind"), DESIGN_KINDS)
    _check_keys("design", t, _DESIGN_COMMON + _DESIGN_KEYS[kind])
    min_steps = _integer("design.min_steps", t.get("min_steps", 20))
    if kind == "isoflop":
        design = _isoflop(t, min_steps)
        levels = len(design.flops) if design.flops is not None else design.levels or 1
        _cap("design.sizes_per_level", levels * design.sizes_per_level)
        return design
    if kind == "grid":
        for key in ("params", "tokens"):
            if key not in t:
                raise _fail(f"design.{key}", "missing: a grid needs params and tokens lists")
        design = DesignSpec(
            kind="grid",
            params=_number_list("design.params", t["params"]),
            tokens=_number_list("design.tokens", t["tokens"]),
            min_steps=min_steps,
        )
        _cap("design.params", len(design.params) * len(design.tokens))
        return design
    if kind == "points":
        return _points(t, min_steps)
    design = _wsd(t, min_steps)
    branches = len(design.branch_tokens or design.branch_fractions or ())
    _cap("design.params", len(design.params) * (1 + branches))
    return design


def _cap(key: str, runs: int) -> None:
    if runs > MAX_DESIGN_RUNS:
        raise _fail(
            key, f"the design has {runs:,} runs; at most {MAX_DESIGN_RUNS:,} can be planned"
        )


def _points(t: dict[str, Any], min_steps: int) -> DesignSpec:
    points = t.get("points")
    if not isinstance(points, list) or not points:
        raise _fail(
            "design.points", "missing: a points design needs points = [[params, tokens], ...]"
        )
    _cap("design.points", len(points))  # before each pair is checked
    out: list[tuple[float, float]] = []
    for i, pair in enumerate(points):
        key = f"design.points[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise _fail(key, f"must be a pair [params, tokens], got {pair!r}")
        out.append((_number(f"{key}[0]", pair[0]), _number(f"{key}[1]", pair[1])))
    if len(set(out)) != len(out):
        raise _fail("design.points", "has repeated [params, tokens] pairs")
    return DesignSpec(kind="points", points=tuple(out), min_steps=min_steps)


def _isoflop(t: dict[str, Any], min_steps: int) -> DesignSpec:
    explicit = "flops" in t
    ranged = [k for k in ("flops_min", "flops_max", "levels") if k in t]
    if explicit and ranged:
        raise _fail(
            "design.flops", f"give flops or flops_min/flops_max/levels, not both ({ranged})"
        )
    if not explicit and len(ranged) != 3:
        lacking = [k for k in ("flops_min", "flops_max", "levels") if k not in t]
        raise _fail(
            f"design.{lacking[0]}",
            "missing: an isoflop design needs flops = [levels] or flops_min, flops_max, levels",
        )
    flops = _number_list("design.flops", t["flops"]) if explicit else None
    flops_min = flops_max = None
    levels = None
    if not explicit:
        flops_min = _number("design.flops_min", t["flops_min"])
        flops_max = _number("design.flops_max", t["flops_max"])
        levels = _integer("design.levels", t["levels"])
        if flops_max < flops_min:
            raise _fail(
                "design.flops_max", f"must be ≥ flops_min ({flops_min:g}), got {flops_max:g}"
            )
        if levels > 1 and flops_max == flops_min:
            raise _fail("design.levels", "must be 1 when flops_min == flops_max")
    sizes = _integer("design.sizes_per_level", t.get("sizes_per_level", 5))
    width = _number("design.width_decades", t.get("width_decades", 1.0))
    if sizes > 1 and width <= 0:
        raise _fail("design.width_decades", "must be > 0")
    return DesignSpec(
        kind="isoflop",
        flops=flops,
        flops_min=flops_min,
        flops_max=flops_max,
        levels=levels,
        sizes_per_level=sizes,
        width_decades=width,
        tokens_per_param=_number("design.tokens_per_param", t.get("tokens_per_param", 20.0)),
        min_steps=min_steps,
    )


def _wsd(t: dict[str, Any], min_steps: int) -> DesignSpec:
    for key in ("params", "tokens"):
        if key not in t:
            raise _fail(f"design.{key}", "missing: a wsd design needs params and tokens")
    tokens = t["tokens"]
    if isinstance(tokens, list):
        if len(tokens) != 1:
            raise _fail(
                "design.tokens", f"a wsd design trains one length: give one number, got {tokens!r}"
            )
        tokens = tokens[0]
    total = _integer("design.tokens", tokens)
    if "branch_tokens" in t and "branch_fractions" in t:
        raise _fail("design.branch_tokens", "give branch_tokens or branch_fractions, not both")
    branch_tokens = branch_fractions = None
    if "branch_tokens" in t:
        branch_tokens = tuple(
            int(v) for v in _number_list("design.branch_tokens", t["branch_tokens"], integer=True)
        )
        if branch_tokens[-1] >= total:
            raise _fail(
                "design.branch_tokens",
                f"every branch point must be < design.tokens ({total}), got {branch_tokens[-1]}",
            )
    elif "branch_fractions" in t:
        branch_fractions = _number_list("design.branch_fractions", t["branch_fractions"])
        if branch_fractions[-1] >= 1:
            raise _fail(
                "design.branch_fractions",
                f"every fraction must be in (0, 1), got {branch_fractions[-1]!r}",
            )
    else:
        raise _fail(
            "design.branch_tokens", "missing: a wsd design needs branch_tokens or branch_fractions"
        )
    return DesignSpec(
        kind="wsd",
        params=_number_list("design.params", t["params"]),
        tokens=(float(total),),
        branch_tokens=branch_tokens,
        branch_fractions=branch_fractions,
        min_steps=min_steps,
    )
