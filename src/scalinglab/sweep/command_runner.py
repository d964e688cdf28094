"""Run one attempt of a command run: launch, watch, time-limit, read the losses back.

Each run has its own folder, ``<store>.runs/<key[:16]>/``, beside the store. It holds the
command's standard output and error of every attempt (``attempt-N.stdout``/``.stderr``), the
losses as JSON lines (``metrics.jsonl``: written by the command, or by scalinglab from what
``loss_regex`` matched), and whatever the command itself writes there (``{run_dir}``).

An attempt that restarts a run resumes from the command's checkpoint when the spec declares one
(``resume_from``) and it exists; the losses of the earlier attempts are then kept and later
reports of the same token count replace them. Otherwise the folder is emptied (the logs of
earlier attempts stay) and the run starts from scratch.

The command runs in a session of its own, without a shell. It is killed (the whole process
group) past ``time_limit_s``, when the driver cancels it, and, through the kernel's parent-death
signal, when the process that launched it dies, SIGKILL included.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scalinglab.sweep.command import (
    placeholder_values,
    render,
    tokens_per_step,
)

__all__ = ["TAIL_LINES", "run_attempt"]

TAIL_LINES = 20  # lines of a failed attempt's log kept in the store's error text
KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL of a command past its limit or cancelled
_POLL_S = 0.1

OnPoint = Callable[[dict[str, Any]], None]


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the thread that launched us


def _load_prctl() -> Any:
    # Looked up once, in the parent: the child only calls it between fork and exec.
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None


_PRCTL = _load_prctl()


def _next_attempt(run_dir: Path) -> int:
    numbers = [
        int(m.group(1))
        for p in run_dir.glob("attempt-*.stdout")
        if (m := re.fullmatch(r"attempt-(\d+)\.stdout", p.name))
    ]
    return max(numbers, default=0) + 1


def _fresh_start(run_dir: Path) -> None:
    """Empty the run's folder for a start from scratch, keeping earlier attempts' logs."""
    for child in run_dir.iterdir():
        if re.fullmatch(r"attempt-\d+\.(stdout|stderr)", child.name):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


class _Curve:
    """Loss points by token count, read incrementally from JSON lines and stdout matches."""

    def __init__(self, config: Mapping[str, Any], path: Path, patterns: list[re.Pattern]):
        self.step_tokens = tokens_per_step(config)
        self.path = path
        self.patterns = patterns
        self.points: dict[int, dict[str, Any]] = {}
        self.bad_lines = 0
        self._offset = 0
        self._stdout_offset = 0

    def _add(self, raw: Mapping[str, Any], wall_s: float | None) -> dict[str, Any] | None:
        try:
            if raw.get("tokens") is not None:
                tokens = int(float(raw["tokens"]))
            else:
                tokens = int(float(raw["step"])) * self.step_tokens
            val = raw.get("val_loss", raw.get("loss"))
            train = raw.get("train_loss")
            val = None if val is None else float(val)
            train = None if train is None else float(train)
        except (KeyError, TypeError, ValueError):
            self.bad_lines += 1
            return None
        if val is None and train is None:
            self.bad_lines += 1
            return None
        point = dict(self.points.get(tokens, {}))
        point.update(tokens=tokens, wall_s=raw.get("wall_s", wall_s))
        if val is not None:
            point["val_loss"] = val
        if train is not None:
            point["train_loss"] = train
        self.points[tokens] = point
        return point

    def read_metrics(self, wall_s: float) -> list[dict[str, Any]]:
        """New complete JSON lines of the metrics file."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for its newline
        self._offset += end
        out = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                self.bad_lines += 1
                continue
            if isinstance(raw, dict) and (point := self._add(raw, wall_s)) is not None:
                out.append(point)
        return out

    def read_stdout(self, stdout: Path, wall_s: float) -> None:
        """Append new complete stdout lines the patterns match to the metrics file as JSON.

        They are read back from there by :meth:`read_metrics`, like a command's own lines, and
        stay for a resumed attempt.
        """
        try:
            with stdout.open("rb") as fh:
                fh.seek(self._stdout_offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._stdout_offset += end
        found = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            for pattern in self.patterns:
                match = pattern.search(line)
                if match:
                    raw = {k: v for k, v in match.groupdict().items() if v is not None}
                    raw["wall_s"] = wall_s
                    found.append(raw)
                    break
        if found:
            with self.path.open("a", encoding="utf-8") as fh:
                for raw in found:
                    fh.write(json.dumps(raw) + "\n")

    def final(self, tokens: int) -> tuple[float | None, list[dict[str, Any]]]:
        """The validation loss at ``tokens`` (or beyond) and the sorted curve."""
        curve = [self.points[t] for t in sorted(self.points)]
        at_end = [p for p in curve if p["tokens"] >= tokens and p.get("val_loss") is not None]
        return (at_end[0]["val_loss"] if at_end else None), curve


def _tail(paths: list[Path], lines: int = TAIL_LINES) -> str:
    out = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        kept = text.rstrip().splitlines()[-lines:]
        if kept:
            out.append(f"--- last {len(kept)} line(s) of {path} ---")
            out.extend(kept)
    return "\n".join(out)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_attempt(
    config: Mapping[str, Any],
    run_dir: str | Path,
    *,
    time_limit_s: float | None = None,
    extra_env: Mapping[str, str] | None = None,
    on_point: OnPoint | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run one attempt of a command run and return its result, or ``{"error": text}``.

    Parameters
    ----------
    config
        The run's config (:func:`scalinglab.sweep.command.command_run_config`).
    run_dir
        The run's folder (created if missing).
    time_limit_s
        Kill the command past this many seconds (``None``: no limit).
    extra_env
        Added to the driver's environment before the spec's ``env`` (the executor's
        ``CUDA_VISIBLE_DEVICES`` and thread counts).
    on_point
        Called with every new loss point (``tokens``, ``val_loss`` and/or ``train_loss``).
    stop
        When set, the command is killed and the attempt returns an error.

    Returns
    -------
    dict
        As :meth:`scalinglab.store.Store.record_result` takes it: ``val_loss``, ``curve``, FLOPs,
        ``tokens_per_s``, ``wall_s``, ``cpu_s``; or ``{"error": ...}`` naming the cause
        (non-zero exit, no final loss, time limit) with the tail of the logs.
    """
    from scalinglab.counting import TransformerShape, count_params, flops_per_token

    command = config["command"]
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    attempt = _next_attempt(run_dir)
    stdout_path = run_dir / f"attempt-{attempt}.stdout"
    stderr_path = run_dir / f"attempt-{attempt}.stderr"
    base = placeholder_values(config, run_dir=str(run_dir))
    checkpoint = render([command["resume_from"]], base)[0] if command["resume_from"] else None
    if checkpoint is not None:
        checkpoint = str((Path(command["workdir"] or ".") / checkpoint).resolve())
    resuming = checkpoint is not None and Path(checkpoint).exists()
    workdir = command["workdir"]
    if workdir is not None and not Path(workdir).is_dir():
        return {"error": f"train.workdir: {workdir!r} is not a folder (attempt {attempt})"}
    if not resuming:
        _fresh_start(run_dir)
    values = placeholder_values(
        config, run_dir=str(run_dir), resume_from=checkpoint if resuming and checkpoint else ""
    )
    argv = render(command["argv"], values)
    if resuming:
        argv += render(command["resume_args"], values)
    env = {**os.environ, **(extra_env or {})}
    env.update({k: v.format_map(values) for k, v in command["env"].items()})
    env.update(
        SCALINGLAB_RUN_DIR=str(run_dir),
        SCALINGLAB_METRICS_PATH=values["metrics_path"],
        SCALINGLAB_RESUME_FROM=values["resume_from"],
    )
    patterns = [re.compile(p) for p in command["loss_regex"]]
    curve = _Curve(config, Path(values["metrics_path"]), patterns)
    resumed_tokens = 0
    if resuming:
        curve.read_metrics(0.0)
        resumed_tokens = max(curve.points, default=0)

    t0 = time.monotonic()
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: killed as a whole
                preexec_fn=_set_parent_death_signal if _PRCTL is not None else None,
            )
        except OSError as exc:
            return {"error": f"cannot start the command {argv[0]!r}: {exc}"}
    status, usage, killed_for = None, None, None
    deadline = math.inf
    try:
        while status is None:
            pid, status_raw, usage_raw = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = status_raw, usage_raw
                proc.returncode = os.waitstatus_to_exitcode(status_raw)
                break
            wall = time.monotonic() - t0
            _emit(curve, stdout_path, wall, on_point)
            if killed_for is None:
                if time_limit_s is not None and wall > time_limit_s:
                    killed_for = f"ran past train.time_limit_s = {time_limit_s:g} s and was killed"
                elif stop is not None and stop.is_set():
                    killed_for = "cancelled by the driver"
                if killed_for is not None:
                    _kill_group(proc.pid, signal.SIGTERM)
                    deadline = time.monotonic() + KILL_GRACE_S
            elif time.monotonic() > deadline:
                _kill_group(proc.pid, signal.SIGKILL)
            time.sleep(_POLL_S)
    finally:
        if status is None:  # interrupted while watching: never leave the command behind
            _kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
    _kill_group(proc.pid, signal.SIGKILL)  # whatever it started and left running
    wall = time.monotonic() - t0
    _emit(curve, stdout_path, wall, on_point)
    logs = [stderr_path, stdout_path]
    where = f"(attempt {attempt}, logs in {run_dir})"
    if killed_for is not None:
        return {"error": f"the command {killed_for} {where}\n{_tail(logs)}"}
    if proc.returncode != 0:
        return {"error": f"the command exited with status {proc.returncode} {where}\n{_tail(logs)}"}
    tokens = int(config["tokens"])
    loss, points = curve.final(tokens)
    if loss is None:
        last = [p for p in points if p.get("val_loss") is not None]
        seen = f"the last at {last[-1]['tokens']:,} tokens" if last else "none at all"
        source = "on stdout (train.loss_regex)" if command["loss_regex"] else f"in {curve.path}"
        bad = f"; {curve.bad_lines} line(s) could not be read" if curve.bad_lines else ""
        return {
            "error": f"the command exited 0 but reported no validation loss at the run's "
            f"{tokens:,} tokens {source}: {seen}{bad} {where}\n{_tail(logs)}"
        }
    shape = TransformerShape(**config["shape"])
    total = count_params(shape).total
    per_op = float(flops_per_token(shape).per_operation)
    cpu_s = (usage.ru_utime + usage.ru_stime) if usage is not None else None
    trained = max(0, tokens - resumed_tokens)
    return {
        "val_loss": loss,
        "curve": [
            {
                "tokens": p["tokens"],
                "flops_6nd": 6.0 * total * p["tokens"],
                "flops_counted": per_op * p["tokens"],
                "train_loss": p.get("train_loss"),
                "val_loss": p.get("val_loss"),
                "lr": None,
                "wall_s": p.get("wall_s"),
            }
            for p in points
        ],
        "branches": [],
        "tokens": tokens,
        "flops_6nd": 6.0 * total * tokens,
        "flops_counted": per_op * tokens,
        "tokens_per_s": trained / wall if wall > 0 and trained else math.nan,
        "mfu": None,
        "device": config["device"],
        "precision": None,
        "wall_s": wall,
        "cpu_s": cpu_s,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "versions": {"command": Path(argv[0]).name, "attempt": str(attempt)},
        "config": dict(config),
    }


def _emit(curve: _Curve, stdout: Path, wall: float, on_point: OnPoint | None) -> None:
    if curve.patterns:
        curve.read_stdout(stdout, wall)
    for point in curve.read_metrics(wall):
        if on_point is not None:
            with contextlib.suppress(Exception):  # progress is a nicety, never a failure
                on_point(point)
