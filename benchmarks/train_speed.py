"""Training speed against the real nanoGPT on its CPU recipe, each run alone, one after the other.

The anchor is nanoGPT itself (../shared/anchors/nanoGPT, commit 3adf61e, MIT; see its
SOURCE.md), run as its own process from a scratch copy with its documented offline CPU recipe:
char-level tinyshakespeare, 4 layers, 4 heads, d_model 128, context 64, batch 12, dropout 0,
2 000 iterations, lr 1e-3 with 100 warmup iterations and cosine decay to 1e-4, β2 0.99, weight
decay 0.1, clipping at 1.0, fp32 eager, a log line per iteration, an estimate of the losses on
20 batches every 250 iterations. Then scalinglab's trainer trains the same model on the same
text (same characters, same 90/10 split) with the same recipe, in this process.

Throughput counts training iterations only: for nanoGPT, the sum of its own per-iteration
times (``iter N: ... time T ms``) over the iterations that did not evaluate; for scalinglab,
its ``tokens_per_s`` (training steps only). Both final models are then scored by one function
(:func:`full_val_loss`) on every window of the whole validation split: nanoGPT's checkpoint in
a separate process that imports the scratch copy's ``model.py``, ours here.

Run:  .venv/bin/python benchmarks/train_speed.py               (≈ 3 min on an idle 2-core Zen 3)
      .venv/bin/python benchmarks/train_speed.py --iters 250   (a quick look; loss not comparable)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BATCH, BLOCK, EVAL_INTERVAL = 12, 64, 250
ITER_LINE = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms")
STEP_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


sys.path.insert(0, str(REPO / "scripts"))
import nanogpt_scratch  # noqa: E402  (scripts/, beside benchmarks/: not a package)

SHAKESPEARE = nanogpt_scratch.SHAKESPEARE


@torch.no_grad()
def full_val_loss(model: torch.nn.Module, val: np.ndarray, block: int = BLOCK) -> float:
    """Mean next-token loss over every non-overlapping window of the validation split.

    Works for both models: each takes ``(idx, targets)`` and returns ``(logits, loss)``.
    """
    model.eval()
    n = (len(val) - 1) // block
    tokens = torch.from_numpy(val[: n * block + 1].astype(np.int64))
    starts = torch.arange(n) * block
    total = 0.0
    for i in range(0, n, BATCH):
        idx = starts[i : i + BATCH, None] + torch.arange(block + 1)
        w = tokens[idx]
        _, loss = model(w[:, :-1].contiguous(), w[:, 1:].contiguous())
        total += float(loss) * len(idx)
    return total / n


def score_nanogpt(checkpoint: Path, val_bin: Path) -> float:
    """Load nanoGPT's checkpoint with nanoGPT's own model.py (the current folder's) and score it."""
    sys.path.insert(0, os.getcwd())
    from model import GPT, GPTConfig  # nanoGPT's, from the scratch copy

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**state["model_args"]))
    weights = {k.removeprefix("_orig_mod."): v for k, v in state["model"].items()}
    model.load_state_dict(weights)
    return full_val_loss(model, np.fromfile(val_bin, dtype=np.uint16))


def run_nanogpt(scratch: Path, out_dir: Path, iters: int, threads: int) -> dict[str, float]:
    """nanoGPT's CPU recipe as its own process; its per-iteration times and losses."""
    eval_interval = EVAL_INTERVAL if iters % EVAL_INTERVAL == 0 else iters
    command = [
        sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu",
        "--compile=False", "--eval_iters=20", "--log_interval=1", f"--block_size={BLOCK}",
        f"--batch_size={BATCH}", "--n_layer=4", "--n_head=4", "--n_embd=128",
        f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--dropout=0.0",
        f"--eval_interval={eval_interval}", f"--out_dir={out_dir}",
        # Saved at every evaluation (the last is the final model), not only on improvement;
        # saving is outside the timed training iterations either way.
        "--always_save_checkpoint=True",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=scratch, env=_threads_env(threads), capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    print(f"nanoGPT: {iters} iterations in {wall:.1f} s", file=sys.stderr, flush=True)
    if done.returncode != 0:
        sys.exit(f"nanoGPT failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    train_ms, val_own = [], float("nan")
    for line in done.stdout.splitlines():
        if m := ITER_LINE.match(line):
            step = int(m.group(1))
            # Iteration N's time includes the evaluation at N when N is an eval step.
            if step % eval_interval != 0 and step < iters:
                train_ms.append(float(m.group(2)))
        elif (m := STEP_LINE.match(line)) and int(m.group(1)) == iters:
            val_own = float(m.group(3))
    timed = len(train_ms)
    return {
        "tokens_per_s": timed * BATCH * BLOCK / (sum(train_ms) / 1000.0),
        "timed_iterations": timed,
        "median_ms_per_iter": float(np.median(train_ms)),
        "val_loss_own_estimate": val_own,
        "wall_s": wall,
    }


def _threads_env(threads: int) -> dict[str, str]:
    """The environment of a nanoGPT process: torch takes its intra-op thread count from it."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_scalinglab(iters: int, vocab: int, threads: int, precision: str, ckpt: Path):
    """scalinglab's trainer on the same recipe, in this process."""
    from scalinglab.counting import TransformerShape
    from scalinglab.train.config import TrainConfig
    from scalinglab.train.trainer import train

    tpi = BATCH * BLOCK
    shape = TransformerShape(4, 128, 4, vocab, BLOCK, bias=False)
    config = TrainConfig(
        shape=shape,
        tokens=iters * tpi,
        corpus=str(SHAKESPEARE),
        tokenizer="char",
        batch_size=BATCH,
        lr=1e-3,
        min_lr_ratio=0.1,
        warmup_tokens=min(100, iters - 1) * tpi,  # nanoGPT's warmup_iters, as its config
        beta2=0.99,
        eval_interval_tokens=EVAL_INTERVAL * tpi,
        eval_tokens=20 * tpi,  # nanoGPT's eval_iters=20 batches on the validation split
        seed=1337,
        threads=threads,
        precision=precision,
    )
    start = time.perf_counter()
    result = train(config, checkpoint_dir=ckpt)
    return result, shape, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000, help="iterations (recipe: 2000)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of both (default: the cores)"
    )
    parser.add_argument("--precision", default="auto", help="scalinglab's: auto, fp32 or bf16")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--score-nanogpt", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score_nanogpt:  # the scoring process (cwd: nanoGPT's scratch copy)
        print(json.dumps({"val_loss": score_nanogpt(*args.score_nanogpt)}))
        return
    from scalinglab.counting import flops_per_token
    from scalinglab.train.corpus import load_corpus
    from scalinglab.train.device import default_threads
    from scalinglab.train.model import GPT
    from scalinglab.train.trainer import CHECKPOINT_NAME
    from scalinglab.units import measured_cpu_peak_flops

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)  # for the scoring of our model here
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ.setdefault("SCALINGLAB_CACHE", str(tmp_path / "cache"))
        scratch = nanogpt_scratch.make_scratch(tmp_path / "nanogpt")
        val_bin = scratch / "data" / "shakespeare_char" / "val.bin"
        val = np.fromfile(val_bin, dtype=np.uint16)
        corpus = load_corpus(str(SHAKESPEARE), tokenizer="char")
        if not np.array_equal(np.asarray(corpus.val_tokens), val):
            sys.exit("scalinglab's char corpus differs from nanoGPT's val.bin: not comparable")

        nano = run_nanogpt(scratch, tmp_path / "nanogpt_out", args.iters, threads)
        scored = subprocess.run(
            [sys.executable, __file__, "--score-nanogpt", str(tmp_path / "nanogpt_out" / "ckpt.pt"),
             str(val_bin)],
            cwd=scratch, env=_threads_env(threads), capture_output=True, text=True, check=True,
        )  # fmt: skip
        # nanoGPT's model.py prints its parameter count first: the figure is the last line.
        nano["val_loss_full_split"] = json.loads(scored.stdout.splitlines()[-1])["val_loss"]

        ckpt = tmp_path / "scalinglab_run"
        result, shape, ours_wall = run_scalinglab(
            args.iters, corpus.vocab_size, threads, args.precision, ckpt
        )
        model = GPT(shape)
        model.load_state_dict(torch.load(ckpt / CHECKPOINT_NAME, weights_only=True)["model"])
        ours_full = full_val_loss(model, val)
    load_after = os.getloadavg()

    peak_fp32 = measured_cpu_peak_flops("fp32", threads=threads)
    per_token = flops_per_token(shape).per_operation
    ratio = result.tokens_per_s / nano["tokens_per_s"]
    figures = {
        "iters": args.iters,
        "device": result.device,
        "scalinglab_precision": result.precision,
        "nanogpt": nano,
        "scalinglab": {
            "tokens_per_s": result.tokens_per_s,
            "val_loss_own_estimate": result.val_loss,
            "val_loss_full_split": ours_full,
            "wall_s": ours_wall,
        },
        "speedup": ratio,
        "peak_fp32_flops_measured": peak_fp32,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
    }
    print(f"nanoGPT CPU recipe, {args.iters} iterations, each run alone, {threads} thread(s) each")
    print(f"  {result.device}")
    print(f"  load average (1 min): {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"  {'':30s}{'nanoGPT':>12s}{'scalinglab':>12s}")
    print(f"  {'precision':30s}{'fp32':>12s}{result.precision:>12s}")
    speeds = (nano["tokens_per_s"], result.tokens_per_s)
    print(f"  {'tokens/s (training)':30s}{speeds[0]:12,.0f}{speeds[1]:12,.0f}")
    print(f"  {'wall time, whole run (s)':30s}{nano['wall_s']:12.1f}{ours_wall:12.1f}")
    print(
        f"  {'val loss (own estimate)':30s}{nano['val_loss_own_estimate']:12.4f}"
        f"{result.val_loss:12.4f}"
    )
    full = (nano["val_loss_full_split"], ours_full)
    print(f"  {'val loss (whole val split)':30s}{full[0]:12.4f}{full[1]:12.4f}")
    mfu = [tps * per_token / peak_fp32 for tps in (nano["tokens_per_s"], result.tokens_per_s)]
    print(f"  {'MFU of measured fp32 peak':30s}{mfu[0]:12.1%}{mfu[1]:12.1%}")
    print(f"  speedup: {ratio:.2f}× nanoGPT's training tokens/s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
