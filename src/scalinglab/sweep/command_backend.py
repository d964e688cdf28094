"""The local executor of command runs: one driver thread per run in flight, GPUs by slot.

A command run is its own process already, so the driver needs no worker processes for it: a
thread per run in flight launches the command, watches it (:func:`.command_runner.run_attempt`)
and returns its result. With ``execution.gpus_per_run`` = g, the visible GPUs are cut into
slots of g devices, and each attempt holds one slot for its lifetime through
``CUDA_VISIBLE_DEVICES``: K workers never share a GPU.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from scalinglab.sweep.backends import Outcome
from scalinglab.sweep.command_runner import run_attempt
from scalinglab.sweep.gpus import THREAD_VARIABLES

__all__ = ["CommandBackend"]


class CommandBackend:
    """Command runs on driver threads (same interface as the process and Ray backends)."""

    def __init__(
        self,
        workers: int,
        time_limit_s: float | None,
        slots: Sequence[str] | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="scalinglab-command")
        self._time_limit_s = time_limit_s
        # The cores split over the runs, as for built-in runs (the spec's env can override it).
        self._env = {} if threads is None else dict.fromkeys(THREAD_VARIABLES, str(threads))
        self._slots: queue.Queue[str] | None = None
        if slots:
            self._slots = queue.Queue()
            for slot in slots:
                self._slots.put(slot)
        self._stop = threading.Event()
        self._points: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()

    def submit(self, run: Any, run_dir: str | None) -> Future:
        """Start one attempt of ``run`` (a RunSpec); the future holds its result dict."""
        assert run_dir is not None
        return self._pool.submit(self._attempt, run.key, run.config_dict, run_dir)

    def _attempt(self, key: str, config: dict[str, Any], run_dir: str) -> dict[str, Any]:
        slot = self._slots.get() if self._slots is not None else None
        env = self._env if slot is None else {**self._env, "CUDA_VISIBLE_DEVICES": slot}
        try:
            return run_attempt(
                config,
                run_dir,
                time_limit_s=self._time_limit_s,
                extra_env=env,
                on_point=lambda point: self._points.put((key, point)),
                stop=self._stop,
            )
        except Exception:
            return {"error": traceback.format_exc()}
        finally:
            if slot is not None and self._slots is not None:
                self._slots.put(slot)

    def wait(self, handles: Sequence[Future], timeout: float) -> list[tuple[Future, Outcome]]:
        """The attempts that finished within ``timeout`` seconds, with their outcomes."""
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for future in done:
            value = future.result()
            error = value.get("error")
            out.append((future, Outcome(None if error else value, error)))
        return out

    def progress(self) -> list[tuple[str, dict[str, Any]]]:
        """Loss points reported since the last call, as (run key, point)."""
        items = []
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self._points.get_nowait())
        return items

    def cancel(self, handles: Sequence[Future]) -> None:
        """Kill every command in flight (their attempts return errors)."""
        self._stop.set()

    def close(self) -> None:
        """Wait for the threads (after :meth:`cancel`, they end within the kill grace)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
