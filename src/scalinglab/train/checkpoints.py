"""Checkpoint files of the trainer: writing them atomically, reading them back, and which
checkpoint a run may resume from.

A run keeps two kinds of checkpoint in its ``checkpoint_dir``:

``checkpoint.pt`` (:data:`CHECKPOINT_NAME`)
    Its latest state, rewritten at every evaluation; it resumes only the identical config
    (threads aside), and once the run is done it holds the result.
``stable.pt`` (:data:`STABLE_NAME`), WSD runs only
    The state at the end of its stable phase, written once, just before the first cooldown
    step of the main run. That is the latest step from which any cooldown of the run can still
    start, so it saves the most compute of any single point; and from it any *longer* WSD run
    of the same stable phase can be trained by running the stable phase on and then cooling
    down (Hägele et al. 2024). A WSD run's state at step s depends on the learning rates of
    steps < s only (:meth:`Schedule.lr <scalinglab.train.schedule.Schedule.lr>`): the peak
    after the same warmup, whatever the total length, as long as s is not past the run's
    cooldown start. So the stable state of config X at step s is exactly the state at step s
    of any config Y with the same :meth:`TrainConfig.stable_phase` whose cooldown starts at or
    after s; :func:`check_stable` checks that and refuses anything else. A cooldown that
    starts *before* s cannot use it (training does not run backwards): such a point needs the
    whole run again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from scalinglab.errors import ScalingLabError
from scalinglab.train.config import CHECKPOINT_NAME, STABLE_NAME, TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "STABLE_NAME",
    "check_stable",
    "load_state",
    "same_config",
    "save_state",
    "starting_state",
]

CHECKPOINT_FORMAT = 1


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync,
    rename, and the folder fsynced so that the rename itself is durable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_state(path: Path, field: str) -> dict[str, Any]:
    """Read a checkpoint (on the CPU), or a one-line error naming ``field`` for a file that is
    not one (damaged, foreign, or from another program)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        TrainConfig.from_dict(state["config"])
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise ScalingLabError(
            f"{path}: not a scalinglab checkpoint ({type(exc).__name__}); move it away "
            "to train from scratch",
            field=field,
        ) from None
    return state


def same_config(state: dict[str, Any], config: TrainConfig) -> bool:
    """Whether a run's own checkpoint belongs to ``config`` (threads change speed only)."""
    theirs = {k: v for k, v in state["config"].items() if k != "threads"}
    mine = {k: v for k, v in config.to_dict().items() if k != "threads"}
    return mine == theirs


def check_stable(state: dict[str, Any], config: TrainConfig, path: Path) -> dict[str, Any]:
    """Check that a stable-phase checkpoint can start ``config``; return the state to resume.

    The returned state keeps the curve up to the checkpoint and the cooldowns already
    branched there that ``config`` asks for too (same trajectory, so the same results).

    Raises
    ------
    ValueError
        The checkpoint is not a WSD stable-phase state, its stable phase differs from
        ``config``'s (model, data, seed, optimiser, warmup ...), it lies past ``config``'s
        cooldown start, or ``config`` branches a cooldown before it that it has not run.
    """
    theirs = TrainConfig.from_dict(state["config"])
    if not state.get("stable"):
        raise ValueError(f"{path} is not a stable-phase checkpoint")
    if theirs.stable_phase() != config.stable_phase():
        mine, other = config.stable_phase(), theirs.stable_phase()
        diff = sorted(k for k in mine.keys() | other.keys() if mine.get(k) != other.get(k))
        raise ValueError(
            f"{path} holds the stable phase of another run (differs in {', '.join(diff)})"
        )
    step, tps = int(state["step"]), config.tokens_per_step
    start = config.schedule_for_run().cooldown_start
    if step > start:
        raise ValueError(
            f"{path} is at {step * tps} tokens, past this run's cooldown start "
            f"({start * tps} tokens): its lr there is already cooling down; train it whole"
        )
    inherited = {int(b["branch_tokens"]): b for b in state["branches"]}
    wanted = {s * tps for s in config.branch_steps()}
    early = sorted(b for b in wanted if b < step * tps and b not in inherited)
    if early:
        raise ValueError(
            f"{path} is at {step * tps} tokens; this run branches a cooldown earlier, at "
            f"{early[0]} tokens, which it cannot reach from there"
        )
    return {
        **state,
        "config": config.to_dict(),
        "resumed_tokens": step * tps,
        "branches": [b for t, b in inherited.items() if t in wanted],
        "stable": False,
        "done": False,
        "result": None,
    }


def starting_state(
    config: TrainConfig, own: Path | None, resume_from: Path | str | None
) -> dict[str, Any] | None:
    """The state a run starts from: its own checkpoint ``own`` if there is one (``done`` with
    the result if it finished), else the stable-phase checkpoint ``resume_from`` once checked
    (:func:`check_stable`), else ``None`` (step 0).

    Raises
    ------
    ValueError
        ``own`` holds another config's checkpoint, or ``resume_from`` cannot start this run.
    ScalingLabError
        Either file is not a scalinglab checkpoint (``field``: ``checkpoint_dir`` or
        ``resume_from``).
    """
    if own is not None and own.exists():
        state = load_state(own, "checkpoint_dir")
        if not same_config(state, config):
            raise ValueError(f"{own} holds a checkpoint of a different config")
        return state
    if resume_from is None:
        return None
    return check_stable(load_state(Path(resume_from), "resume_from"), config, Path(resume_from))
