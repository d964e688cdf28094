"""Where runs train: the worker side of the executors, and the local and Ray backends.

A worker trains one run from its config and returns ``TrainResult.to_dict()`` (or its error as
text, so every backend reports failures the same way); progress points go back to the driver
through a queue. :class:`LocalBackend` keeps a process pool started from a forkserver,
:class:`RayBackend` submits one Ray task per run. Only the driver (:mod:`.executors`) uses
them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import select
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalinglab._optional import require
from scalinglab.sweep.command import is_command_config
from scalinglab.sweep.command_runner import run_attempt
from scalinglab.sweep.gpus import THREAD_VARIABLES, gpu_slots, visible_gpus
from scalinglab.sweep.runspec import RunSpec

__all__ = [
    "LocalBackend",
    "Outcome",
    "RayBackend",
    "TrainFn",
    "available_cores",
    "result_dict",
    "threads_per_worker",
]

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
    threads: int, progress: Any, environ: Mapping[str, str], driver_pid: int, gpus: Any = None
) -> None:
    """Initializer of a local worker process."""
    global _PROGRESS
    _PROGRESS = progress
    _exit_with(driver_pid)
    # A forkserver keeps the environment it started with; the driver's may have changed
    # since (a cache folder, a token), and a run must see what the driver sees.
    os.environ.clear()
    os.environ.update(environ)
    if gpus is not None:
        # This worker's own GPUs for its lifetime (a pool holds as many workers as there are
        # slots, and is rebuilt with fresh slots when one dies); set before CUDA starts.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get(timeout=60)
    # The driver handles Ctrl-C (it goes to the whole process group) and stops the workers
    # itself, so that a run is never half-recorded.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Die with the parent too (the driver itself when workers are spawned).
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # Before torch is imported, so that its OpenMP pool starts at the right size.
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


def result_dict(result: Any) -> dict[str, Any]:
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
    time_limit_s: float | None = None,
    resume_from: str | None = None,
) -> dict[str, Any]:
    """Train one run in a worker; return ``TrainResult.to_dict()`` or ``{"error": text}``.

    A command run (:mod:`.command`) runs its command instead, in ``checkpoint_dir`` (its own
    folder), killed past ``time_limit_s``. ``resume_from``: a kept stable-phase checkpoint to
    start from (:mod:`.trunks`); the result names the run's own (``stable_checkpoint``).

    Exceptions are returned as text rather than raised so that every executor reports them
    the same way, whatever can or cannot be pickled. A crash of the process itself reaches
    the driver as the executor's own error.
    """
    try:
        config = json.loads(config_json)
        if is_command_config(config):
            assert checkpoint_dir is not None
            on_point = None if progress is None else lambda p: progress.put_nowait((key, p))
            return run_attempt(config, checkpoint_dir, time_limit_s=time_limit_s, on_point=on_point)
        from scalinglab.train.config import STABLE_NAME, TrainConfig

        if train_fn is None:
            from scalinglab.train.trainer import train as train_fn
        config["threads"] = threads
        cfg = TrainConfig.from_dict(config)

        def on_progress(point: Any) -> None:
            if progress is not None:
                with contextlib.suppress(Exception):  # progress is a nicety, never a failure
                    progress.put_nowait((key, _point_dict(point)))

        ckpt = Path(checkpoint_dir) if checkpoint_dir else None
        # Passed only when there is one and the function takes it (a --train-fn written
        # before kept checkpoints does not): without it the run trains from step 0, same result.
        takes = resume_from and "resume_from" in inspect.signature(train_fn).parameters
        extra = {"resume_from": Path(resume_from)} if takes else {}
        cpu_start = time.process_time()
        out = result_dict(train_fn(cfg, checkpoint_dir=ckpt, on_progress=on_progress, **extra))
        # CPU seconds of this attempt, all threads: on a shared machine, what the run would
        # take on cores of its own (wall ≈ cpu_s / threads when nothing else competes).
        out["cpu_s"] = time.process_time() - cpu_start
        out["threads"] = threads
        out["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        if ckpt is not None and (ckpt / STABLE_NAME).is_file():
            out["stable_checkpoint"] = str(ckpt / STABLE_NAME)
        return out
    except Exception:
        return {"error": traceback.format_exc()}


def _execute_local(
    key: str,
    config_json: str,
    threads: int,
    train_fn: TrainFn | None,
    checkpoint_dir: str | None,
    resume_from: str | None = None,
) -> dict[str, Any]:
    return _execute(
        key, config_json, threads, train_fn, checkpoint_dir, _PROGRESS, resume_from=resume_from
    )


# --- backends -------------------------------------------------------------------------------


@dataclass
class Outcome:
    result: dict[str, Any] | None
    error: str | None


_WORKER_PRELOAD = ("scalinglab.sweep.backends", "scalinglab.train.trainer")


class LocalBackend:
    """Worker processes on this machine; a crashed worker breaks the pool, which is rebuilt."""

    def __init__(
        self, workers: int, threads: int, train_fn: TrainFn | None, *, gpus_per_run: int = 0
    ) -> None:
        import multiprocessing

        self.workers, self.threads, self.train_fn = workers, threads, train_fn
        self._slots = gpu_slots(workers, gpus_per_run) if gpus_per_run else None
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
            gpus = None
            if self._slots is not None:
                gpus = self._ctx.Queue()
                for slot in self._slots:
                    gpus.put(slot)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=self._ctx,
                initializer=_init_local_worker,
                initargs=(self.threads, self._queue, dict(os.environ), os.getpid(), gpus),
            )
        return self._pool

    def submit(
        self, run: RunSpec, checkpoint_dir: str | None, resume_from: str | None = None
    ) -> Future:
        return self._ensure_pool().submit(
            _execute_local,
            run.key,
            run.config,
            self.threads,
            self.train_fn,
            checkpoint_dir,
            resume_from,
        )

    def wait(self, handles: Sequence[Future], timeout: float) -> list[tuple[Future, Outcome]]:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        broken = False
        for fut in done:
            try:
                value = fut.result()
            except BrokenProcessPool as exc:
                broken = True
                out.append((fut, Outcome(None, f"a worker process died: {exc}")))
                continue
            except Exception as exc:  # pickling and other executor-side failures
                out.append((fut, Outcome(None, f"{type(exc).__name__}: {exc}")))
                continue
            error = value.get("error")
            out.append((fut, Outcome(None if error else value, error)))
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
    time_limit_s: float | None = None,
    resume_from: str | None = None,
) -> dict[str, Any]:
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    return _execute(
        key, config_json, threads, train_fn, checkpoint_dir, progress, time_limit_s, resume_from
    )


class RayBackend:
    """One Ray task per run. Ray retries nothing itself: the driver owns the retry count."""

    def __init__(
        self,
        workers: int,
        threads: int,
        train_fn: TrainFn | None,
        *,
        address: str | None,
        temp_dir: str | None,
        resources: Mapping[str, Any] | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        ray = require("ray", "the ray executor")
        self._ray = ray
        self.threads, self.train_fn = threads, train_fn
        self.time_limit_s = time_limit_s
        # What each run asks of the cluster (num_cpus, num_gpus, memory): Ray places it on a
        # node that has it free, and sets CUDA_VISIBLE_DEVICES in the task to its GPUs.
        options: dict[str, Any] = {"num_cpus": threads, **(resources or {})}
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,  # workers must not draw over the progress bar
                "configure_logging": False,
            }
            if address is None:
                kwargs["num_cpus"] = workers * options["num_cpus"]
                if options.get("num_gpus"):
                    kwargs["num_gpus"] = len(visible_gpus())
                if temp_dir is not None:
                    # Unix socket paths are limited to 107 bytes, so keep the folder short.
                    kwargs["_temp_dir"] = str(temp_dir)
            else:
                kwargs["address"] = address
            ray.init(**kwargs)
            self._started = True
        self._remote = ray.remote(_execute_ray).options(max_retries=0, **options)
        from ray.util.queue import Queue

        self._queue = Queue(actor_options={"num_cpus": 0})

    def submit(
        self, run: RunSpec, checkpoint_dir: str | None, resume_from: str | None = None
    ) -> Any:
        return self._remote.remote(
            run.key,
            run.config,
            self.threads,
            self.train_fn,
            checkpoint_dir,
            self._queue,
            self.time_limit_s,
            resume_from,
        )

    def wait(self, handles: Sequence[Any], timeout: float) -> list[tuple[Any, Outcome]]:
        ray = self._ray
        ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            try:
                value = ray.get(ref)
            except Exception as exc:  # a crashed worker, a lost node, a cancelled task
                out.append((ref, Outcome(None, f"{type(exc).__name__}: {exc}")))
                continue
            error = value.get("error")
            out.append((ref, Outcome(None if error else value, error)))
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
