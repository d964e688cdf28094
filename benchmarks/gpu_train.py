"""GPU check: scalinglab's trainer and the real nanoGPT on a CUDA device, tokens/s and MFU.

For three sizes of the GPT family, our trainer runs a few dozen steps in fp32 (TF32 matmuls, as
torch and nanoGPT set them), under bf16 autocast, and under bf16 autocast with
``torch.compile``; nanoGPT (../shared/anchors/nanoGPT, from a scratch copy, as its own process)
runs the smallest size the same three ways. Throughput is the steady state: the median over
the steps after ``--warmup`` (compilation and cache warm-up excluded), from our per-step curve
points and from nanoGPT's own ``iter N: ... time T ms`` lines. MFU is that throughput times
the per-operation FLOPs per token (Hoffmann et al. 2022, App. F; the same count for both) over
the GPU's dense bf16 peak (the data sheet for A100/H100/H200, a measured bf16 matmul rate
otherwise), so the three precisions are put against one yardstick.

Sizes (char-level tinyshakespeare, vocabulary 65, no dropout, no biases):

- S: 6 layers × 384, 6 heads, context 256, batch 64 (nanoGPT's shakespeare_char GPU recipe);
- M: 12 × 768, 12 heads, context 1024, batch 16 (GPT-2 small's shape);
- L: 24 × 1024, 16 heads, context 1024, batch 16 (GPT-2 medium's shape).

It should take under 5 minutes on an H100-class GPU; ``--budget-s`` skips what is left past
the budget (and says so). Without CUDA it says so and exits 0. ``--device cpu --smoke`` runs
tiny versions of everything but compile on the CPU in about a minute: a self-check of the
script, not a measurement.

Run:  .venv/bin/python benchmarks/gpu_train.py [--json out.json]
      .venv/bin/python benchmarks/gpu_train.py --device cpu --smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ITER_LINE = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms")
VOCAB = 65  # tinyshakespeare's characters


@dataclass(frozen=True)
class Size:
    name: str
    n_layer: int
    d_model: int
    n_head: int
    context: int
    batch: int


GPU_SIZES = (
    Size("S", 6, 384, 6, 256, 64),
    Size("M", 12, 768, 12, 1024, 16),
    Size("L", 24, 1024, 16, 1024, 16),
)
SMOKE_SIZES = (Size("S", 2, 64, 2, 32, 4), Size("M", 2, 96, 2, 32, 4), Size("L", 3, 128, 4, 32, 4))
# (label, our precision, our compile, nanoGPT's dtype, nanoGPT's compile)
MODES = (
    ("fp32", "fp32", False, "float32", False),
    ("bf16", "bf16", False, "bfloat16", False),
    ("bf16+compile", "bf16", True, "bfloat16", True),
)


sys.path.insert(0, str(REPO / "scripts"))
import nanogpt_scratch  # noqa: E402  (scripts/, beside benchmarks/: not a package)

SHAKESPEARE = nanogpt_scratch.SHAKESPEARE


def _shape(size: Size):
    from scalinglab.counting import TransformerShape

    return TransformerShape(
        size.n_layer, size.d_model, size.n_head, VOCAB, size.context, bias=False
    )


def _steady_tokens_per_s(seconds_per_step: list[float], tokens_per_step: int) -> float:
    return tokens_per_step / statistics.median(seconds_per_step)


def measure_ours(size: Size, precision: str, compile_: bool, device: str, steps: int, warmup: int):
    """Our trainer, ``warmup + steps`` steps; tokens/s from the per-step curve."""
    from scalinglab.train.config import TrainConfig
    from scalinglab.train.trainer import train

    step_tokens = size.batch * size.context
    total = warmup + steps + 1
    config = TrainConfig(
        shape=_shape(size),
        tokens=total * step_tokens,
        corpus=str(SHAKESPEARE),
        tokenizer="char",
        batch_size=size.batch,
        warmup_tokens=0,
        eval_interval_tokens=total * step_tokens,  # one evaluation, at the end
        eval_tokens=step_tokens,
        log_interval_tokens=step_tokens,  # a curve point (and a device sync) per step
        device=device,
        precision=precision,
        compile=compile_,
    )
    result = train(config)
    walls = [p.wall_s for p in result.curve]
    # Step k's time is the gap between points k-1 and k; the last point includes the evaluation.
    per_step = [b - a for a, b in itertools.pairwise(walls)][warmup:-1]
    return _steady_tokens_per_s(per_step, step_tokens)


def measure_nanogpt(
    scratch: Path,
    out: Path,
    size: Size,
    dtype: str,
    compile_: bool,
    device: str,
    steps: int,
    warmup: int,
) -> float:
    """nanoGPT's train.py as its own process; tokens/s from its per-iteration times."""
    iters = warmup + steps + 1
    command = [
        sys.executable, "train.py", "config/train_shakespeare_char.py", f"--device={device}",
        f"--dtype={dtype}", f"--compile={compile_}", f"--n_layer={size.n_layer}",
        f"--n_head={size.n_head}", f"--n_embd={size.d_model}", f"--block_size={size.context}",
        f"--batch_size={size.batch}", "--gradient_accumulation_steps=1", "--dropout=0.0",
        f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--eval_interval=1000000",
        "--eval_iters=1", "--log_interval=1", f"--out_dir={out}",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"nanoGPT exited {done.returncode}: {done.stderr[-2000:]}")
    ms = [float(m.group(2)) for line in done.stdout.splitlines() if (m := ITER_LINE.match(line))]
    per_step = [t / 1000.0 for t in ms[warmup + 1 :]]  # iteration 0 also holds an evaluation
    if not per_step:
        raise RuntimeError(f"no timed iterations in nanoGPT's output:\n{done.stdout[-2000:]}")
    return _steady_tokens_per_s(per_step, size.batch * size.context)


def _peak_flops(device: str) -> tuple[float, str]:
    if device.startswith("cuda"):
        from scalinglab.train.device import resolve_runtime

        runtime = resolve_runtime(device, "bf16")
        return runtime.peak_flops, f"{runtime.device_name} dense bf16 peak"
    from scalinglab.units import measured_cpu_peak_flops

    return measured_cpu_peak_flops("fp32"), "measured fp32 matmul peak of this CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a self-check")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (30; smoke 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (8; smoke 1)")
    parser.add_argument("--budget-s", type=float, default=270.0, help="skip what is left after")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "no CUDA device here: this check needs a GPU (README, scalinglab train); nothing to do"
        )
        return
    if args.device == "cpu" and not args.smoke:
        sys.exit("--device cpu is a self-check only: add --smoke")
    sizes = SMOKE_SIZES if args.smoke else GPU_SIZES
    # Compiling on a CPU takes minutes and measures nothing of interest here.
    modes = [m for m in MODES if not (args.smoke and m[2])]
    steps = args.steps or (4 if args.smoke else 30)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 8)
    start = time.monotonic()
    peak, peak_name = _peak_flops(args.device)
    from scalinglab.counting import flops_per_token

    rows = []

    def over_budget() -> bool:
        return time.monotonic() - start > args.budget_s

    def row(who: str, size: Size, label: str, measure) -> None:
        tps, note = None, ""
        if over_budget():
            note = "skipped: past --budget-s"
        else:
            try:
                tps = measure()
            except Exception as exc:  # one failed cell must not lose the rest of the table
                note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[-1][:120]}"
        per_token = flops_per_token(_shape(size)).per_operation
        rows.append(
            {
                "trainer": who,
                "size": size.name,
                "shape": f"{size.n_layer}×{size.d_model}/{size.n_head}, ctx {size.context}",
                "batch": size.batch,
                "mode": label,
                "tokens_per_s": tps,
                "mfu": None if tps is None else tps * per_token / peak,
                "note": note,
            }
        )
        cell = f"{tps:14,.0f} tok/s  MFU {rows[-1]['mfu']:6.1%}" if tps else note
        print(f"  {who:10s} {size.name} {label:13s} {cell}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SCALINGLAB_CACHE", str(Path(tmp) / "cache"))
        print(f"{'smoke test on' if args.smoke else 'measuring on'} {args.device}; MFU of the "
              f"{peak_name} ({peak:.3g} FLOP/s)", flush=True)  # fmt: skip
        for size in sizes:
            for label, precision, compile_, _, _ in modes:
                row(
                    "scalinglab",
                    size,
                    label,
                    lambda s=size, p=precision, c=compile_: measure_ours(
                        s, p, c, args.device, steps, warmup
                    ),
                )
        scratch = nanogpt_scratch.make_scratch(Path(tmp) / "nanogpt")
        for label, _, _, dtype, compile_ in modes:
            row(
                "nanoGPT",
                sizes[0],
                label,
                lambda d=dtype, c=compile_, label=label: measure_nanogpt(
                    scratch, Path(tmp) / f"out-{label}", sizes[0], d, c, args.device, steps, warmup
                ),
            )
    _print_table(rows, time.monotonic() - start)
    if args.smoke:
        print("(--smoke: a self-check of this script on tiny models, not a measurement)")
    if args.json:
        args.json.write_text(json.dumps({"peak_flops": peak, "peak": peak_name, "rows": rows}))


def _print_table(rows: list[dict], wall_s: float) -> None:
    print(f"\n| trainer | size | shape | batch | mode | tokens/s | MFU |  ({wall_s:.0f} s in all)")
    print("|---|---|---|---|---|---|---|")
    ours = {(r["size"], r["mode"]): r["tokens_per_s"] for r in rows if r["trainer"] != "nanoGPT"}
    for r in rows:
        tps = "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}"
        mfu = r["note"] or ("-" if r["mfu"] is None else f"{r['mfu']:.1%}")
        print(
            f"| {r['trainer']} | {r['size']} | {r['shape']} | {r['batch']} | {r['mode']} "
            f"| {tps} | {mfu} |"
        )
    for r in rows:
        mine = ours.get((r["size"], r["mode"]))
        if r["trainer"] == "nanoGPT" and r["tokens_per_s"] and mine:
            print(f"scalinglab / nanoGPT, size {r['size']}, {r['mode']}: "
                  f"{mine / r['tokens_per_s']:.2f}×")  # fmt: skip


if __name__ == "__main__":
    main()
