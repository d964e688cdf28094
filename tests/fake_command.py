"""A stand-in trainer for command-run tests: a law-shaped loss, reported as a real trainer would.

Usage: ``python fake_command.py --params N --tokens D --steps S --run-dir DIR --metrics PATH
[--stdout] [--resume CKPT] [--sleep S] [--checkpoint-every K]``.

It reports ``val_loss`` from the Chinchilla law fitted by Hoffmann et al. (2022, eq. 10: E = 1.69,
A = 406.4, B = 410.7, α = 0.34, β = 0.28) at four points, as JSON lines appended to ``--metrics``
or, with ``--stdout``, as nanoGPT-style lines on standard output. It writes a checkpoint (the
step reached) every ``--checkpoint-every`` steps and resumes from ``--resume`` when given. Every
start appends a line to ``DIR/starts.log`` (``scratch`` or ``resume <step>``) and every finish
``done`` to ``DIR/finishes.log``, so tests can count what ran.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def loss(params: float, tokens: float) -> float:
    return E + A / params**ALPHA + B / max(tokens, 1.0) ** BETA


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--params", "--tokens", "--steps"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--stdout", action="store_true")
    parser.add_argument("--resume", default="")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    args = parser.parse_args()
    start = 0
    if args.resume:
        start = int(Path(args.resume).read_text())
    with (args.run_dir / "starts.log").open("a") as fh:
        fh.write(f"resume {start}\n" if args.resume else "scratch\n")
    (args.run_dir / f"pid-{os.getpid()}").touch()
    step_tokens = args.tokens // args.steps
    report_at = {args.steps * i // 4 for i in (1, 2, 3, 4)}
    for step in range(start + 1, args.steps + 1):
        time.sleep(args.sleep / args.steps)
        if step in report_at:
            value = loss(args.params, step * step_tokens)
            if args.stdout:
                line = f"step {step}: train loss {value + 0.01:.6f}, val loss {value:.6f}"
                print(line, flush=True)
            else:
                with args.metrics.open("a") as fh:
                    fh.write(json.dumps({"step": step, "val_loss": value}) + "\n")
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            tmp = args.run_dir / "ckpt.tmp"
            tmp.write_text(str(step))
            tmp.replace(args.run_dir / "ckpt.txt")
    with (args.run_dir / "finishes.log").open("a") as fh:
        fh.write("done\n")


if __name__ == "__main__":
    main()
