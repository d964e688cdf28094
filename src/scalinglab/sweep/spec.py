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

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalinglab.sweep.command import check_runner, command_from_train
from scalinglab.sweep.spec_checks import as_integer, as_string, as_table, check_keys, key_error
from scalinglab.sweep.spec_design import parse_design
from scalinglab.sweep.spec_tables import (
    parse_budget,
    parse_data,
    parse_execution,
    parse_model,
    parse_train,
)
from scalinglab.sweep.spec_values import SpecError, SweepSpec

# The value types (SweepSpec, SpecError, ...) are spec_values's; they are importable from here too.
# The tables are read by spec_tables ([data] ... [execution]) and spec_design ([design]), each
# value checked by spec_checks.
__all__ = ["load_spec", "parse_spec"]

_TOP = ("sweep", "data", "model", "train", "budget", "execution", "design")
_SWEEP = ("name", "seed", "store")


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
    check_keys("", raw, _TOP)
    if "design" not in raw:
        raise key_error("design", "missing: a spec needs a [design] table with a kind")

    sweep = as_table("sweep", raw.get("sweep", {}))
    check_keys("sweep", sweep, _SWEEP)
    name = as_string("sweep.name", sweep.get("name", default_name))
    seed = as_integer("sweep.seed", sweep.get("seed", 0), minimum=0)
    store = as_string("sweep.store", sweep.get("store", "scalinglab.db"))

    train = as_table("train", raw.get("train", {}))
    spec = SweepSpec(
        name=name,
        seed=seed,
        store=store,
        data=parse_data(as_table("data", raw.get("data", {})), command="command" in train),
        model=parse_model(as_table("model", raw.get("model", {}))),
        train=parse_train(train),
        budget=parse_budget(as_table("budget", raw.get("budget", {}))),
        execution=parse_execution(as_table("execution", raw.get("execution", {}))),
        design=parse_design(as_table("design", raw["design"])),
        command=command_from_train(train),
    )
    check_runner(spec)
    return spec
