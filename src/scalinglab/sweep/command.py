"""Command runs: a sweep that launches any trainer through a command template.

A spec whose ``[train]`` table has ``command`` trains each planned run by running that command
(nanoGPT's ``train.py``, a litgpt or torchtitan launcher, a shell script) instead of
scalinglab's own trainer. The design, the FLOP accounting, the run keys and the store are the
same as for built-in runs; only what executes a run differs.

Spec keys (in ``[train]``)::

    command = "python train.py --n_layer={n_layer} --n_embd={d_model} --max_iters={steps}"
    # or an argv list: ["python", "train.py", "--n_layer={n_layer}", ...]
    env = { OMP_NUM_THREADS = "1" }     # added to the environment (placeholders allowed)
    workdir = "../nanogpt"              # where it runs (default: the current folder)
    time_limit_s = 3600                 # killed and retried past this (default: no limit)
    loss_regex = "nanogpt"              # or regexes with named groups (see below)
    resume_from = "{run_dir}/ckpt.pt"   # the checkpoint the command writes, if it can resume
    resume_args = ["--init_from=resume"]  # appended when a restarted run resumes from it
    batch_size = 12                     # sequences per step: steps = tokens / (batch · seq_len)
    lr = 1e-3                           # for {lr}
    device = "cpu"                      # for {device} ("cuda" when execution.gpus_per_run ≥ 1)

The losses come back in one of two ways: the command appends JSON lines to ``{metrics_path}``
(``{"tokens": 1000, "val_loss": 2.1}``, or ``"step"`` instead of ``"tokens"``; ``"loss"`` is an
alias of ``"val_loss"``, and ``"train_loss"`` is optional), or, with ``loss_regex``, scalinglab
reads them from the command's standard output with regular expressions whose named groups are
``step`` or ``tokens``, and ``val_loss`` (or ``loss``) and/or ``train_loss``. A list of
patterns reads several kinds of line. The run's final loss is the validation loss reported at
its planned token count.

This module is the spec side (validation, placeholders, rendering); :mod:`.command_runner`
launches and watches the processes.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scalinglab.sweep.spec_checks import as_number, as_string, as_table, key_error

__all__ = [
    "COMMAND_KEYS",
    "LOSS_PATTERNS",
    "PLACEHOLDERS",
    "CommandSpec",
    "check_runner",
    "command_from_train",
    "command_run_config",
    "parse_command",
    "placeholder_values",
    "render",
]

# The placeholders a command template may use, and what each holds.
PLACEHOLDERS: dict[str, str] = {
    "n_layer": "layers of the run's model",
    "d_model": "its width",
    "n_head": "its attention heads",
    "vocab_size": "its vocabulary (data.vocab_size)",
    "params": "N, its parameter count as the sweep declares it (model.param_basis)",
    "tokens": "D, its training tokens",
    "steps": "optimizer steps: tokens / (batch · seq_len)",
    "batch": "sequences per optimizer step (train.batch_size)",
    "seq_len": "tokens per sequence (model.context_length)",
    "lr": "peak learning rate (train.lr)",
    "seed": "the sweep's seed (sweep.seed)",
    "run_dir": "the run's own folder, kept beside the store (absolute)",
    "metrics_path": "{run_dir}/metrics.jsonl, where JSON-line losses are appended",
    "resume_from": "the checkpoint to resume from when the run restarts, else empty",
    "device": '"cuda" when the run gets GPUs (execution.gpus_per_run), else train.device',
    "python": "the Python interpreter running scalinglab (sys.executable)",
}

# Ready-made patterns by name (loss_regex = "nanogpt").
LOSS_PATTERNS: dict[str, tuple[str, ...]] = {
    # nanoGPT's train.py: `step 250: train loss 2.0342, val loss 2.0921` at every evaluation,
    # and `iter 251: loss 1.9973, time 33.20ms, mfu 0.31%` at every log interval.
    "nanogpt": (
        r"step (?P<step>\d+): train loss (?P<train_loss>[\d.]+), val loss (?P<val_loss>[\d.]+)",
        r"iter (?P<step>\d+): loss (?P<train_loss>[\d.]+)",
    ),
}

# [train] keys of a command run; with `command`, the trainer options below are the only others.
COMMAND_KEYS = (
    "command",
    "env",
    "workdir",
    "time_limit_s",
    "loss_regex",
    "resume_from",
    "resume_args",
)
COMMAND_TRAIN_OPTIONS = ("batch_size", "lr", "device")
_POSITION_GROUPS = ("step", "tokens")
_LOSS_GROUPS = ("val_loss", "loss", "train_loss")


@dataclass(frozen=True)
class CommandSpec:
    """How to run one training run as a command.

    Attributes
    ----------
    argv
        The command as an argv template (a string command is split like a shell would,
        without running a shell); placeholders are filled per run.
    env
        Extra environment variables (values are templates too).
    workdir
        Folder the command runs in (``None``: the driver's current folder).
    time_limit_s
        Wall-clock limit of one attempt; past it the command is killed and the attempt fails.
    loss_regex
        Patterns read on standard output (empty: JSON lines in ``{metrics_path}``).
    resume_from
        Template of the checkpoint path the command writes; when it exists at a restart,
        ``{resume_from}`` holds it and ``resume_args`` are appended.
    resume_args
        Arguments appended to a resumed attempt's command.
    """

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    time_limit_s: float | None = None
    loss_regex: tuple[str, ...] = ()
    resume_from: str | None = None
    resume_args: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (what a run's config and key hold; the time limit is left out:
        it decides whether a run finishes, not what it computes)."""
        return {
            "argv": list(self.argv),
            "env": dict(self.env),
            "workdir": self.workdir,
            "loss_regex": list(self.loss_regex),
            "resume_from": self.resume_from,
            "resume_args": list(self.resume_args),
        }


def _argv(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise key_error(key, f"cannot be split into arguments: {exc}") from None
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = list(value)
    else:
        raise key_error(key, f"must be a string or a list of strings, got {value!r}")
    if not parts or not parts[0].strip():
        raise key_error(key, "is empty: give the program to run and its arguments")
    for part in parts:
        _check_template(key, part)
    return tuple(parts)


def _check_template(key: str, text: str) -> None:
    """Every ``{field}`` must be a known placeholder and its format spec must apply."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise key_error(
            key, f"bad template {text!r}: {exc} (write {{{{ and }}}} for braces)"
        ) from None
    for name in fields:
        if name not in PLACEHOLDERS:
            near = [p for p in PLACEHOLDERS if p.startswith(name[:3])] if name else []
            hint = f" (did you mean {{{near[0]}}}?)" if near else ""
            raise key_error(
                key,
                f"unknown placeholder {{{name}}} in {text!r}{hint}; "
                f"placeholders: {', '.join(PLACEHOLDERS)}",
            )
    try:
        text.format_map(_SAMPLE)
    except (ValueError, TypeError) as exc:
        raise key_error(key, f"bad format in {text!r}: {exc}") from None


_SAMPLE = {
    **dict.fromkeys(
        ("n_layer", "d_model", "n_head", "vocab_size", "params", "tokens", "steps", "batch"), 2
    ),
    "seq_len": 2,
    "lr": 1e-3,
    "seed": 0,
    "run_dir": "/r",
    "metrics_path": "/r/m",
    "resume_from": "",
    "device": "cpu",
    "python": "python",
}


def _patterns(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value in LOSS_PATTERNS:
        return LOSS_PATTERNS[value]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(p, str) for p in items):
        raise key_error(
            key,
            f"must be a regular expression, a list of them, or one of "
            f"{', '.join(map(repr, LOSS_PATTERNS))}; got {value!r}",
        )
    for i, pattern in enumerate(items):
        where = key if isinstance(value, str) else f"{key}[{i}]"
        try:
            groups = set(re.compile(pattern).groupindex)
        except re.error as exc:
            raise key_error(where, f"not a regular expression: {exc}") from None
        if not groups & set(_POSITION_GROUPS):
            raise key_error(where, "needs a named group (?P<step>...) or (?P<tokens>...)")
        if not groups & set(_LOSS_GROUPS):
            raise key_error(
                where, "needs a named group (?P<val_loss>...), (?P<loss>...) or (?P<train_loss>...)"
            )
    return tuple(items)


def parse_command(table: Mapping[str, Any]) -> CommandSpec:
    """Validate the command keys of a ``[train]`` table.

    Raises
    ------
    SpecError
        Naming the key (``train.command``, ``train.env.NAME``, ...) and what is allowed.
    """
    argv = _argv("train.command", table["command"])
    env: list[tuple[str, str]] = []
    raw_env = as_table("train.env", table.get("env", {}))
    for name, value in raw_env.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise key_error(f"train.env.{name}", f"must be a string or a number, got {value!r}")
        _check_template(f"train.env.{name}", str(value))
        env.append((str(name), str(value)))
    workdir = table.get("workdir")
    if workdir is not None:  # ~ and $VARIABLES expand, so one spec serves several machines
        workdir = os.path.expandvars(os.path.expanduser(as_string("train.workdir", workdir)))
    limit = table.get("time_limit_s")
    if limit is not None:
        limit = as_number("train.time_limit_s", limit)
    patterns = _patterns("train.loss_regex", table["loss_regex"]) if "loss_regex" in table else ()
    resume_from = table.get("resume_from")
    if resume_from is not None:
        resume_from = as_string("train.resume_from", resume_from)
        _check_template("train.resume_from", resume_from)
        if "{resume_from}" in resume_from:
            raise key_error("train.resume_from", "cannot refer to itself")
    resume_args: tuple[str, ...] = ()
    if "resume_args" in table:
        if resume_from is None:
            raise key_error("train.resume_args", "needs train.resume_from (the checkpoint)")
        resume_args = _argv("train.resume_args", table["resume_args"])
    uses_resume = any("{resume_from" in part for part in argv)
    if uses_resume and resume_from is None:
        raise key_error("train.command", "uses {resume_from} but train.resume_from is not set")
    return CommandSpec(
        argv=argv,
        env=tuple(sorted(env)),
        workdir=workdir,
        time_limit_s=limit,
        loss_regex=patterns,
        resume_from=resume_from,
        resume_args=resume_args,
    )


def check_command_train_keys(table: Mapping[str, Any]) -> None:
    """With ``command`` set, refuse the built-in trainer's options: the command sets its own."""
    for name in table:
        if name not in COMMAND_KEYS and name not in COMMAND_TRAIN_OPTIONS:
            raise key_error(
                f"train.{name}",
                "is an option of scalinglab's own trainer; a command run sets it in its command "
                f"(allowed with command: {', '.join(COMMAND_KEYS + COMMAND_TRAIN_OPTIONS)})",
            )


def command_from_train(table: Mapping[str, Any]) -> CommandSpec | None:
    """The command of a ``[train]`` table, or ``None`` for runs of scalinglab's trainer.

    Raises
    ------
    SpecError
        A command key without ``command``, a built-in trainer option beside it, or a bad value.
    """
    if "command" not in table:
        for key in COMMAND_KEYS:
            if key in table:
                raise key_error(f"train.{key}", "applies to command runs only: set train.command")
        return None
    check_command_train_keys(table)
    return parse_command(table)


def check_runner(sweep: Any) -> None:
    """What a command run, or a run given GPUs, needs of the rest of a validated spec.

    Raises
    ------
    SpecError
        Naming the key: a WSD design, a point with cooldown branches or a wall-clock budget
        with a command (all need scalinglab's trainer), a command without
        ``train.batch_size``, or GPUs for runs of our trainer on another device than CUDA.
    """
    if sweep.command is not None:
        if sweep.design.kind == "wsd":
            raise key_error(
                "design.kind",
                "'wsd' branches cooldowns inside scalinglab's trainer; a command run needs "
                "'grid' or 'isoflop'",
            )
        if sweep.design.kind == "points" and any(len(p) >= 3 for p in sweep.design.points):
            raise key_error(
                "design.points",
                "a point with cooldown branches needs scalinglab's trainer; a command run "
                "trains [params, tokens] points only",
            )
        if sweep.budget.wall_clock_s is not None:
            raise key_error(
                "budget.wall_clock_s",
                "is estimated by timing scalinglab's trainer; give budget.flops for command runs",
            )
        if sweep.train.batch_size is None:
            raise key_error(
                "train.batch_size",
                "missing: a command run needs it (steps = tokens / (batch_size · context_length))",
            )
    elif sweep.execution.gpus_per_run and not (sweep.train.device or "").startswith("cuda"):
        raise key_error(
            "train.device",
            f"execution.gpus_per_run = {sweep.execution.gpus_per_run} gives each run GPUs; set "
            'device = "cuda" so that scalinglab\'s trainer uses them',
        )


# --- per run -------------------------------------------------------------------------------


def command_run_config(
    command: CommandSpec,
    *,
    shape: Mapping[str, Any],
    params: int,
    tokens: int,
    batch_size: int,
    lr: float | None,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """The config of one command run: what its key hashes and what its attempts render.

    Raises
    ------
    SpecError
        The command uses ``{lr}`` but ``train.lr`` is not set.
    """
    templates = [*command.argv, *command.resume_args, *(v for _, v in command.env)]
    if lr is None and any("{lr" in t for t in templates):
        raise key_error("train.lr", "the command uses {lr}: set train.lr")
    seq_len = int(shape["context_length"])
    return {
        "runner": "command",
        "command": command.to_dict(),
        "shape": dict(shape),
        "params": int(params),
        "tokens": int(tokens),
        "steps": max(1, round(tokens / (batch_size * seq_len))),
        "batch_size": int(batch_size),
        "lr": lr,
        "seed": int(seed),
        "device": device,
    }


def is_command_config(config: Mapping[str, Any]) -> bool:
    """True for the config of a command run (``command_run_config``)."""
    return config.get("runner") == "command"


def placeholder_values(
    config: Mapping[str, Any], *, run_dir: str, resume_from: str = ""
) -> dict[str, Any]:
    """The values of every placeholder for one attempt of a command run."""
    shape = config["shape"]
    return {
        "n_layer": shape["n_layer"],
        "d_model": shape["d_model"],
        "n_head": shape["n_head"],
        "vocab_size": shape["vocab_size"],
        "params": config["params"],
        "tokens": config["tokens"],
        "steps": config["steps"],
        "batch": config["batch_size"],
        "seq_len": shape["context_length"],
        "lr": config["lr"] if config["lr"] is not None else math.nan,
        "seed": config["seed"],
        "run_dir": run_dir,
        "metrics_path": metrics_path(run_dir),
        "resume_from": resume_from,
        "device": config["device"],
        "python": sys.executable,
    }


def metrics_path(run_dir: str) -> str:
    """Where a run's JSON-line losses go (``{metrics_path}``)."""
    return f"{run_dir.rstrip('/')}/metrics.jsonl"


def render(templates: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Fill every placeholder of each template."""
    return [t.format_map(values) for t in templates]


def tokens_per_step(config: Mapping[str, Any]) -> int:
    """Tokens of one optimizer step of a command run (for losses reported by ``step``)."""
    return int(config["batch_size"]) * int(config["shape"]["context_length"])
