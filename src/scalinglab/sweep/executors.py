"""Run a planned sweep: the driver loop, and the executors that train runs in parallel.

The driver is the only process that writes to the store. It computes which planned runs are
not finished yet, submits them longest first to an executor, and commits each result (run,
curve and cooldown points) in one transaction as it arrives. A failed run is retried up to
``max_retries`` times and then recorded as failed with its error; the sweep goes on. Killing
the driver at any point loses no finished run and duplicates none: running it again does only
what is missing.

Executors
---------
``local``
    Worker processes on this machine (forked from a clean forkserver), with the
    cores split evenly between them: K workers get ``cores // K`` threads each. On a 2-core
    machine two 1-thread workers trained small models ≈ 1.3–1.96× faster in total than one
    2-thread worker (the issue's and ``../shared/data/cpu_baselines/baselines.json``'s
    figures): small matmuls do not scale across threads, independent runs do.
``ray``
    Ray tasks, one per run, each asking for ``threads`` CPUs (or the spec's
    ``execution.cpus_per_run``), ``gpus_per_run`` GPUs and ``memory_per_run`` bytes; ``address``
    joins a running cluster, otherwise a private local Ray instance is started (and stopped
    afterwards).

Command runs (``[train] command``, :mod:`.command`) run locally on driver threads, one per run
in flight (:mod:`.command_backend`), or as Ray tasks; with ``gpus_per_run`` the local executor
gives each run its own GPUs through ``CUDA_VISIBLE_DEVICES``, as it does each worker process of
scalinglab's trainer.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalinglab._optional import require
from scalinglab.store import Store, StoreError
from scalinglab.sweep.backends import (
    LocalBackend,
    Outcome,
    RayBackend,
    TrainFn,
    threads_per_worker,
)
from scalinglab.sweep.budget import Plan, makespan_s
from scalinglab.sweep.command_backend import CommandBackend
from scalinglab.sweep.gpus import gpu_slots
from scalinglab.sweep.runspec import RunSpec
from scalinglab.sweep.trunks import find_start, keep, trunk_of

__all__ = [
    "EXECUTORS",
    "RunEvent",
    "SweepSummary",
    "run_sweep",
]

EXECUTORS = ("local", "ray")


# --- the driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunEvent:
    """Something that happened to a run, for progress displays.

    Attributes
    ----------
    kind
        ``"started"``, ``"progress"`` (a curve point), ``"finished"``, ``"retry"`` or
        ``"failed"`` (retries exhausted).
    run
        The run.
    attempt
        Which attempt (1 for the first).
    point
        The curve point (``"progress"``), as a mapping.
    loss
        Final validation loss (``"finished"``).
    error
        The error text (``"retry"``, ``"failed"``).
    """

    kind: str
    run: RunSpec
    attempt: int = 1
    point: Mapping[str, Any] | None = None
    loss: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class SweepSummary:
    """What one call of :func:`run_sweep` did.

    Attributes
    ----------
    planned
        Runs in the plan.
    already_finished
        Runs the store already held finished (skipped).
    finished
        Runs trained and recorded by this call.
    failed
        Keys of runs recorded as failed after their retries.
    retries
        Failed attempts that were retried.
    wall_s
        Wall time of the call.
    cpu_s
        CPU seconds the runs trained by this call took (all their threads, retries
        excluded).
    dedicated_wall_s
        The wall time those runs would take on ``workers`` × ``threads`` cores of their own:
        the longest-first makespan of cpu_s / threads. On a shared machine this, not
        ``wall_s``, is the figure that transfers.
    """

    planned: int
    already_finished: int
    finished: int
    failed: tuple[str, ...]
    retries: int
    wall_s: float
    executor: str
    workers: int
    threads: int
    cpu_s: float = 0.0
    dedicated_wall_s: float | None = None

    @property
    def complete(self) -> bool:
        """Every planned run is finished."""
        return self.already_finished + self.finished == self.planned


@dataclass
class _Flight:
    run: RunSpec
    attempt: int
    started: float = field(default_factory=time.monotonic)


def run_sweep(
    plan: Plan,
    store: Store,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    max_retries: int | None = None,
    address: str | None = None,
    ray_temp_dir: str | Path | None = None,
    checkpoint_root: str | Path | None = None,
    train_fn: TrainFn | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
    poll_s: float = 0.2,
    run_root: str | Path | None = None,
) -> SweepSummary:
    """Train every run of ``plan`` that ``store`` does not hold finished, and record it.

    Parameters
    ----------
    plan
        From :func:`scalinglab.sweep.plan_sweep`.
    store
        Opened for writing; this process is its only writer.
    executor
        ``"local"`` or ``"ray"``.
    workers
        Runs in flight at once (default: ``plan.workers``).
    threads
        Torch threads per run (default: the cores split over ``workers``; 1 on Ray).
    max_retries
        Failed attempts retried per run before it is recorded as failed (default: the
        spec's ``execution.max_retries``).
    address
        Ray only: the cluster to join (``None`` starts a private local instance).
    ray_temp_dir
        Ray only: where a private instance keeps its files.
    checkpoint_root
        Where runs checkpoint so that a killed run resumes mid-way (``None``: no
        checkpoints; a finished run's checkpoint is deleted once it is recorded, but a WSD
        run's stable-phase state is kept in the store's area, :mod:`.trunks`). A WSD run
        whose stable phase the store keeps a checkpoint of starts from it, with or without.
    train_fn
        The training function (default :func:`scalinglab.train.trainer.train`); it must be
        importable by the workers. Tests pass cheap stand-ins.
    on_event
        Called in the driver for every :class:`RunEvent`.
    poll_s
        How often the driver wakes to drain progress.
    run_root
        Command runs only: where each run keeps its folder (``<run_root>/<key[:16]>``: the
        logs of every attempt, its losses, what the command writes to ``{run_dir}``); default
        ``<store>.runs`` beside the store. On a Ray cluster, a shared filesystem.

    Returns
    -------
    SweepSummary

    Raises
    ------
    KeyboardInterrupt
        After stopping the workers; finished runs are kept, in-flight ones are put back to
        ``planned``.
    StoreError
        Another driver is running on the same store (a store has one writer at a time).
    """
    with _driver_lock(store.path):
        return _drive(
            plan,
            store,
            executor=executor,
            workers=workers,
            threads=threads,
            max_retries=max_retries,
            address=address,
            ray_temp_dir=ray_temp_dir,
            checkpoint_root=checkpoint_root,
            train_fn=train_fn,
            on_event=on_event,
            poll_s=poll_s,
            run_root=run_root,
        )


@contextlib.contextmanager
def _driver_lock(path: Path) -> Iterator[None]:
    """Hold ``<store>.lock`` exclusively while driving, so a store has a single writer.

    ``flock`` is released by the kernel when the process ends, SIGKILL included, so a killed
    driver never leaves a stale lock behind.
    """
    import fcntl

    lock_path = Path(path).with_name(Path(path).name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"{path}: another sweep driver is running on this store; wait for it or stop it"
        ) from None
    try:
        yield
    finally:
        os.close(fd)  # the file stays: removing a lock file races with the next taker


def _backend(
    plan: Plan,
    executor: str,
    workers: int,
    threads: int,
    train_fn: TrainFn | None,
    address: str | None,
    ray_temp_dir: str | Path | None,
) -> Any:
    """The backend that runs the plan's runs, with the resources each run declares."""
    execution, command = plan.spec.execution, plan.spec.command
    time_limit_s = None if command is None else command.time_limit_s
    if executor == "local" and command is not None:
        slots = gpu_slots(workers, execution.gpus_per_run) if execution.gpus_per_run else None
        return CommandBackend(workers, time_limit_s, slots, threads=threads)
    if executor == "local":
        return LocalBackend(workers, threads, train_fn, gpus_per_run=execution.gpus_per_run)
    resources: dict[str, Any] = {}
    if execution.cpus_per_run is not None:
        resources["num_cpus"] = execution.cpus_per_run
    if execution.gpus_per_run:
        resources["num_gpus"] = execution.gpus_per_run
    if execution.memory_per_run is not None:
        resources["memory"] = execution.memory_per_run
    return RayBackend(
        workers,
        threads,
        train_fn,
        address=address,
        temp_dir=None if ray_temp_dir is None else str(ray_temp_dir),
        resources=resources,
        time_limit_s=time_limit_s,
    )


def _drive(
    plan: Plan,
    store: Store,
    *,
    executor: str,
    workers: int | None,
    threads: int | None,
    max_retries: int | None,
    address: str | None,
    ray_temp_dir: str | Path | None,
    checkpoint_root: str | Path | None,
    train_fn: TrainFn | None,
    on_event: Callable[[RunEvent], None] | None,
    poll_s: float,
    run_root: str | Path | None,
) -> SweepSummary:
    """The driver loop of :func:`run_sweep`, run under the store's driver lock."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    command = plan.spec.command
    if command is not None and train_fn is not None:
        raise ValueError("a command sweep runs its [train] command; it takes no train_fn")
    if command is None and train_fn is None:  # say what to install now, not in each worker
        require("torch", "training a sweep")
    if command is not None:  # each command run's own folder: logs, losses, its checkpoint
        checkpoint_root = Path(run_root or store.path.with_name(store.path.name + ".runs"))
        checkpoint_root = checkpoint_root.resolve()
    t0 = time.monotonic()
    workers = workers or plan.workers
    if threads is None:
        threads = 1 if (executor == "ray" and address is not None) else threads_per_worker(workers)
    max_retries = plan.spec.execution.max_retries if max_retries is None else max_retries
    emit = on_event or (lambda event: None)

    store.add_sweep(plan.spec, plan.runs)
    store.reset_running()  # left over by a driver that was killed
    status = store.statuses(r.key for r in plan.runs)
    todo = deque(r for r in plan.runs if status.get(r.key) != "finished")
    already = len(plan.runs) - len(todo)
    attempts: dict[str, int] = {}
    finished, retries = 0, 0
    failed: list[str] = []
    cpu_times: list[float] = []
    summary = dict(planned=len(plan.runs), executor=executor, workers=workers, threads=threads)
    if not todo:
        return SweepSummary(
            already_finished=already,
            finished=0,
            failed=(),
            retries=0,
            wall_s=time.monotonic() - t0,
            **summary,
        )

    backend = _backend(plan, executor, workers, threads, train_fn, address, ray_temp_dir)
    inflight: dict[Any, _Flight] = {}
    by_key = {r.key: r for r in plan.runs}

    def checkpoint_dir(run: RunSpec) -> str | None:
        if checkpoint_root is None:
            return None
        return str(Path(checkpoint_root) / run.key[:16])

    try:
        while todo or inflight:
            while todo and len(inflight) < workers:
                run = todo.popleft()
                attempts[run.key] = attempts.get(run.key, 0) + 1
                store.mark_running(run.key, threads=threads, worker=executor)
                # Read again each time: a trunk finished earlier in this sweep counts too.
                start = None if command is not None else find_start(store.kept_checkpoints(), run)
                if start is None:
                    handle = backend.submit(run, checkpoint_dir(run))
                else:
                    handle = backend.submit(run, checkpoint_dir(run), start.path)
                inflight[handle] = _Flight(run, attempts[run.key])
                emit(RunEvent("started", run, attempts[run.key]))
            for key, point in backend.progress():
                if key in by_key:
                    emit(RunEvent("progress", by_key[key], attempts.get(key, 1), point=point))
            for handle, outcome in backend.wait(list(inflight), poll_s):
                flight = inflight.pop(handle)
                run = flight.run
                deterministic = False
                loss = None if outcome.result is None else outcome.result.get("val_loss")
                if outcome.result is not None and not _finite(loss):
                    # Training is a pure function of its config and seed: a run that diverged
                    # would diverge again, so it fails now instead of being retried.
                    outcome = Outcome(None, f"training diverged: final validation loss {loss}")
                    deterministic = True
                if outcome.result is not None:
                    try:
                        # The kept checkpoint moves into the store's area before the run is
                        # recorded with it: killed in between, the rerun records it then.
                        kept = None if command is not None else keep(store, run, outcome.result)
                        resumed = int(outcome.result.get("resumed_tokens") or 0)
                        trunk = (
                            trunk_of(store.kept_checkpoints(), run, resumed) if resumed else None
                        )
                        store.record_result(run, outcome.result, kept=kept, trunk_key=trunk)
                    except Exception as exc:  # a result the store cannot take is a failure
                        outcome = Outcome(None, f"recording failed: {type(exc).__name__}: {exc}")
                    else:
                        finished += 1
                        if outcome.result.get("cpu_s") is not None:
                            cpu_times.append(float(outcome.result["cpu_s"]))
                        ckpt = checkpoint_dir(run) if command is None else None  # kept: logs
                        if ckpt:
                            shutil.rmtree(ckpt, ignore_errors=True)
                        emit(
                            RunEvent(
                                "finished",
                                run,
                                flight.attempt,
                                loss=outcome.result.get("val_loss"),
                            )
                        )
                        continue
                error = outcome.error or "unknown error"
                final = deterministic or flight.attempt > max_retries
                store.record_failure(run.key, error, final=final)
                if final:
                    failed.append(run.key)
                    emit(RunEvent("failed", run, flight.attempt, error=error))
                else:
                    retries += 1
                    todo.appendleft(run)
                    emit(RunEvent("retry", run, flight.attempt, error=error))
    except BaseException:
        # Ctrl-C or a failure of the driver itself: stop the workers, keep what finished,
        # and put what was in flight back to planned for the next call.
        if hasattr(backend, "cancel"):
            backend.cancel(list(inflight))
        backend.close()
        with contextlib.suppress(Exception):
            store.reset_running()
        raise
    backend.close()
    if checkpoint_root is not None:
        with contextlib.suppress(OSError):  # only when empty: nothing else's is removed
            Path(checkpoint_root).rmdir()
    return SweepSummary(
        already_finished=already,
        finished=finished,
        failed=tuple(failed),
        retries=retries,
        wall_s=time.monotonic() - t0,
        cpu_s=sum(cpu_times),
        dedicated_wall_s=makespan_s([c / threads for c in cpu_times], workers)
        if cpu_times
        else None,
        **summary,
    )


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def default_ray_temp_dir() -> str:
    """A short private folder for a local Ray instance's files (socket paths must stay short)."""
    return tempfile.mkdtemp(prefix="slray-", dir="/tmp" if os.path.isdir("/tmp") else None)


def iter_pending(plan: Plan, store: Store) -> Iterator[RunSpec]:
    """The plan's runs that the store does not hold finished, in submission order."""
    status = store.statuses(r.key for r in plan.runs)
    return (r for r in plan.runs if status.get(r.key) != "finished")
