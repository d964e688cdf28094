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
    Ray tasks, one per run, each asking for ``threads`` CPUs; ``address`` joins a running
    cluster, otherwise a private local Ray instance is started (and stopped afterwards).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalinglab._optional import require
from scalinglab.store import Store, StoreError
from scalinglab.sweep.budget import Plan, ThroughputModel, makespan_s
from scalinglab.sweep.runspec import RunSpec
from scalinglab.units import cached_measurement, machine_ident

__all__ = [
    "EXECUTORS",
    "RunEvent",
    "SweepSummary",
    "available_cores",
    "measure_throughput",
    "run_sweep",
    "threads_per_worker",
]

EXECUTORS = ("local", "ray")
TrainFn = Callable[..., Any]


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads for each of ``workers`` so that together they use the cores once."""
    cores = cores or available_cores()
    return max(1, cores // max(1, workers))


# --- what workers run -----------------------------------------------------------------------

_PROGRESS: Any = None  # the progress queue of this worker process, set by its initializer


def _exit_with(pid: int) -> None:
    """Exit this process as soon as process ``pid`` (the driver) has ended.

    A forkserver's workers are not the driver's children, and they hold the pipes that would
    tell them it died, so without this a SIGKILLed driver leaves them waiting (or training)
    forever. A pidfd becomes readable when its process ends and cannot be fooled by pid reuse;
    where there is none, poll.
    """
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(70)
    except (AttributeError, OSError):  # pragma: no cover - Linux < 5.3, other systems
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:  # pragma: no cover - see above
            while True:
                time.sleep(1.0)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    continue
        os._exit(70)  # EX_SOFTWARE: nobody is left to receive this worker's result

    threading.Thread(target=watch, name="scalinglab-driver-watch", daemon=True).start()


def _init_local_worker(
    threads: int, progress: Any, environ: Mapping[str, str], driver_pid: int
) -> None:
    """Initializer of a local worker process."""
    global _PROGRESS
    _PROGRESS = progress
    _exit_with(driver_pid)
    # A forkserver keeps the environment it started with; the driver's may have changed
    # since (a cache folder, a token), and a run must see what the driver sees.
    os.environ.clear()
    os.environ.update(environ)
    # The driver handles Ctrl-C (it goes to the whole process group) and stops the workers
    # itself, so that a run is never half-recorded.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Die with the parent too (the driver itself when workers are spawned).
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # Before torch is imported, so that its OpenMP pool starts at the right size.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def _result_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        return dict(result)
    if hasattr(result, "to_dict"):
        return result.to_dict()
    return dataclasses.asdict(result)


def _point_dict(point: Any) -> dict[str, Any]:
    if isinstance(point, Mapping):
        return dict(point)
    return dataclasses.asdict(point)


def _execute(
    key: str,
    config_json: str,
    threads: int,
    train_fn: TrainFn | None,
    checkpoint_dir: str | None,
    progress: Any,
) -> dict[str, Any]:
    """Train one run in a worker; return ``TrainResult.to_dict()`` or ``{"error": text}``.

    Exceptions are returned as text rather than raised so that every executor reports them
    the same way, whatever can or cannot be pickled. A crash of the process itself reaches
    the driver as the executor's own error.
    """
    try:
        from scalinglab.train.config import TrainConfig

        if train_fn is None:
            from scalinglab.train.trainer import train as train_fn
        config = json.loads(config_json)
        config["threads"] = threads
        cfg = TrainConfig.from_dict(config)

        def on_progress(point: Any) -> None:
            if progress is not None:
                with contextlib.suppress(Exception):  # progress is a nicety, never a failure
                    progress.put_nowait((key, _point_dict(point)))

        ckpt = Path(checkpoint_dir) if checkpoint_dir else None
        cpu_start = time.process_time()
        out = _result_dict(train_fn(cfg, checkpoint_dir=ckpt, on_progress=on_progress))
        # CPU seconds of this attempt, all threads: on a shared machine, what the run would
        # take on cores of its own (wall ≈ cpu_s / threads when nothing else competes).
        out["cpu_s"] = time.process_time() - cpu_start
        out["threads"] = threads
        out["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        return out
    except Exception:
        return {"error": traceback.format_exc()}


def _execute_local(
    key: str, config_json: str, threads: int, train_fn: TrainFn | None, checkpoint_dir: str | None
) -> dict[str, Any]:
    return _execute(key, config_json, threads, train_fn, checkpoint_dir, _PROGRESS)


# --- backends -------------------------------------------------------------------------------


@dataclass
class _Outcome:
    result: dict[str, Any] | None
    error: str | None


_WORKER_PRELOAD = ("scalinglab.sweep.executors", "scalinglab.train.trainer")


class _LocalBackend:
    """Worker processes on this machine; a crashed worker breaks the pool, which is rebuilt."""

    def __init__(self, workers: int, threads: int, train_fn: TrainFn | None) -> None:
        import multiprocessing

        self.workers, self.threads, self.train_fn = workers, threads, train_fn
        # Not fork: the driver holds threads (rich's refresh, the pool's manager), and forking
        # a threaded process can deadlock. A forkserver imports torch and the trainer once, then
        # forks clean single-threaded copies, so a worker (or a pool rebuilt after a crash)
        # starts in milliseconds instead of paying torch's import (seconds) each time.
        if "forkserver" in multiprocessing.get_all_start_methods():
            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload(list(_WORKER_PRELOAD))
        else:  # pragma: no cover - platforms without fork
            self._ctx = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = None
        self._queue: Any = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._queue = self._ctx.Queue()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=self._ctx,
                initializer=_init_local_worker,
                initargs=(self.threads, self._queue, dict(os.environ), os.getpid()),
            )
        return self._pool

    def submit(self, run: RunSpec, checkpoint_dir: str | None) -> Future:
        return self._ensure_pool().submit(
            _execute_local, run.key, run.config, self.threads, self.train_fn, checkpoint_dir
        )

    def wait(self, handles: Sequence[Future], timeout: float) -> list[tuple[Future, _Outcome]]:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        broken = False
        for fut in done:
            try:
                value = fut.result()
            except BrokenProcessPool as exc:
                broken = True
                out.append((fut, _Outcome(None, f"a worker process died: {exc}")))
                continue
            except Exception as exc:  # pickling and other executor-side failures
                out.append((fut, _Outcome(None, f"{type(exc).__name__}: {exc}")))
                continue
            error = value.get("error")
            out.append((fut, _Outcome(None if error else value, error)))
        if broken:
            self._discard_pool()
        return out

    def progress(self) -> list[tuple[str, dict[str, Any]]]:
        items = []
        if self._queue is None:
            return items
        with contextlib.suppress(Exception):
            while True:
                items.append(self._queue.get_nowait())
        return items

    def _discard_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # shutdown() waits for running tasks; the processes are killed first so it does not.
        # _processes is private, but the only handle on them the standard library offers.
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        if self._queue is not None:
            with contextlib.suppress(Exception):
                self._queue.close()
                self._queue.cancel_join_thread()
            self._queue = None

    def close(self) -> None:
        self._discard_pool()


def _execute_ray(
    key: str,
    config_json: str,
    threads: int,
    train_fn: TrainFn | None,
    checkpoint_dir: str | None,
    progress: Any,
) -> dict[str, Any]:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    return _execute(key, config_json, threads, train_fn, checkpoint_dir, progress)


class _RayBackend:
    """One Ray task per run. Ray retries nothing itself: the driver owns the retry count."""

    def __init__(
        self,
        workers: int,
        threads: int,
        train_fn: TrainFn | None,
        *,
        address: str | None,
        temp_dir: str | None,
    ) -> None:
        ray = require("ray", "the ray executor")
        self._ray = ray
        self.threads, self.train_fn = threads, train_fn
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,  # workers must not draw over the progress bar
                "configure_logging": False,
            }
            if address is None:
                kwargs["num_cpus"] = workers * threads
                if temp_dir is not None:
                    # Unix socket paths are limited to 107 bytes, so keep the folder short.
                    kwargs["_temp_dir"] = str(temp_dir)
            else:
                kwargs["address"] = address
            ray.init(**kwargs)
            self._started = True
        self._remote = ray.remote(_execute_ray).options(num_cpus=threads, max_retries=0)
        from ray.util.queue import Queue

        self._queue = Queue(actor_options={"num_cpus": 0})

    def submit(self, run: RunSpec, checkpoint_dir: str | None) -> Any:
        return self._remote.remote(
            run.key, run.config, self.threads, self.train_fn, checkpoint_dir, self._queue
        )

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, _Outcome]]:
        ray = self._ray
        ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            try:
                value = ray.get(ref)
            except Exception as exc:  # a crashed worker, a lost node, a cancelled task
                out.append((ref, _Outcome(None, f"{type(exc).__name__}: {exc}")))
                continue
            error = value.get("error")
            out.append((ref, _Outcome(None if error else value, error)))
        return out

    def progress(self) -> list[tuple[str, dict[str, Any]]]:
        items: list[tuple[str, dict[str, Any]]] = []
        with contextlib.suppress(Exception):
            n = self._queue.qsize()
            if n:
                items.extend(self._queue.get_nowait_batch(n))
        return items

    def cancel(self, handles: Sequence[Any]) -> None:
        for ref in handles:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._queue.shutdown()
        if self._started:
            self._ray.shutdown()


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
        checkpoints; a finished run's checkpoint is deleted once it is recorded).
    train_fn
        The training function (default :func:`scalinglab.train.trainer.train`); it must be
        importable by the workers. Tests pass cheap stand-ins.
    on_event
        Called in the driver for every :class:`RunEvent`.
    poll_s
        How often the driver wakes to drain progress.

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
) -> SweepSummary:
    """The driver loop of :func:`run_sweep`, run under the store's driver lock."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if train_fn is None:  # say what to install now, not in every worker's traceback
        require("torch", "training a sweep")
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

    if executor == "local":
        backend: Any = _LocalBackend(workers, threads, train_fn)
    else:
        backend = _RayBackend(
            workers,
            threads,
            train_fn,
            address=address,
            temp_dir=None if ray_temp_dir is None else str(ray_temp_dir),
        )
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
                handle = backend.submit(run, checkpoint_dir(run))
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
                    outcome = _Outcome(None, f"training diverged: final validation loss {loss}")
                    deterministic = True
                if outcome.result is not None:
                    try:
                        store.record_result(run, outcome.result)
                    except Exception as exc:  # a result the store cannot take is a failure
                        outcome = _Outcome(None, f"recording failed: {type(exc).__name__}: {exc}")
                    else:
                        finished += 1
                        if outcome.result.get("cpu_s") is not None:
                            cpu_times.append(float(outcome.result["cpu_s"]))
                        ckpt = checkpoint_dir(run)
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


# --- throughput probe -----------------------------------------------------------------------

PROBE_STEPS = 8


def measure_throughput(
    runs: Sequence[RunSpec],
    *,
    threads: int,
    steps: int = PROBE_STEPS,
    train_fn: TrainFn | None = None,
    refresh: bool = False,
) -> ThroughputModel:
    """Time a few training steps of the smallest and largest planned models, cached.

    The probe trains in this process with ``threads`` torch threads, the way a worker will,
    on the runs' own device, corpus and batch size. Results are cached per machine, torch
    version, thread count and config (under ``$SCALINGLAB_CACHE``), so planning twice costs
    nothing.

    Parameters
    ----------
    runs
        The planned runs (at least one).
    threads
        Torch threads each worker will use.
    steps
        Optimiser steps per probe; the first is discarded as warm-up when the trainer
        reports per-point wall times.
    train_fn
        The training function (default: the real trainer).
    refresh
        Ignore the cache.
    """
    from scalinglab.counting import flops_per_token
    from scalinglab.train.config import TrainConfig

    if train_fn is None:
        require("torch", "measuring training throughput")
        from scalinglab.train.trainer import train as train_fn
    if not runs:
        raise ValueError("no runs to probe")
    ordered = sorted(runs, key=lambda r: flops_per_token(r.shape).per_operation)
    probes = [ordered[0]] if len(ordered) == 1 else [ordered[0], ordered[-1]]
    device = str(probes[0].config_dict.get("device", "cpu"))
    xs, ys = [], []
    for run in probes:
        config = run.config_dict
        step_tokens = int(config["batch_size"]) * run.shape.context_length
        # Evaluate once, at the end, on one batch, and log every step: the curve's wall times
        # then time the training steps alone, and the first (warm-up) step can be dropped.
        config.update(
            tokens=steps * step_tokens,
            threads=threads,
            branch_tokens=[],
            eval_interval_tokens=steps * step_tokens,
            eval_tokens=step_tokens,
            log_interval_tokens=step_tokens,
            warmup_tokens=0,
        )
        ident = f"{machine_ident()}|{device}|{threads}|{json.dumps(config, sort_keys=True)}"

        def probe(config: dict[str, Any] = config, step_tokens: int = step_tokens) -> float:
            result = _result_dict(train_fn(TrainConfig.from_dict(config)))
            return _probe_speed(result, step_tokens)

        speed = cached_measurement("sweep_throughput.json", ident, probe, refresh=refresh)
        xs.append(float(flops_per_token(run.shape).per_operation))
        ys.append(float(speed))
    if len(xs) == 2 and xs[0] == xs[1]:
        xs, ys = xs[:1], [max(ys)]
    return ThroughputModel(tuple(xs), tuple(ys), device=device, threads=threads)


def _probe_speed(result: Mapping[str, Any], step_tokens: int) -> float:
    """Tokens per second of a probe run, excluding the first step when the curve allows."""
    curve = list(result.get("curve") or ())
    timed = [p for p in curve if p.get("wall_s") is not None]
    if len(timed) >= 2:
        first, last = timed[0], timed[-1]
        dt = float(last["wall_s"]) - float(first["wall_s"])
        dn = int(last["tokens"]) - int(first["tokens"])
        if dt > 0 and dn > 0:
            return dn / dt
    speed = float(result.get("tokens_per_s") or 0.0)
    if not math.isfinite(speed) or speed <= 0:
        wall = float(result.get("wall_s") or 0.0)
        speed = float(result.get("tokens", 0)) / wall if wall > 0 else float("nan")
    return speed


def default_ray_temp_dir() -> str:
    """A short private folder for a local Ray instance's files (socket paths must stay short)."""
    return tempfile.mkdtemp(prefix="slray-", dir="/tmp" if os.path.isdir("/tmp") else None)


def iter_pending(plan: Plan, store: Store) -> Iterator[RunSpec]:
    """The plan's runs that the store does not hold finished, in submission order."""
    status = store.statuses(r.key for r in plan.runs)
    return (r for r in plan.runs if status.get(r.key) != "finished")
