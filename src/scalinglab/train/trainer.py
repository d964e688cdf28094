"""The training loop: AdamW, cosine or WSD schedules, evaluation, FLOP accounting, checkpoints.

``train(config)`` trains one model and returns a :class:`TrainResult` holding the loss curve
with tokens and FLOPs (6·N·D with N the total count, and the per-operation count of Hoffmann
et al. 2022, App. F) at each point, the final validation loss, throughput and MFU.

Determinism: the initial weights come from ``seed``; the batch of step ``s`` is a pure function
of ``(seed, s)``; validation always uses the same evenly spaced windows of the validation split.
So a run killed and resumed from its last checkpoint retraces the uninterrupted run (bit for bit
on CPU with the same thread count), and a WSD cooldown branched at step s is exactly the shorter
WSD run it stands for.

``train`` never prints: progress goes to ``on_progress``. It sets torch's thread count for the
run and restores it afterwards, so a sweep can run one single-threaded worker per core.

Speed on CPU (measured by benchmarks/train_speed.py against the real nanoGPT, run as its own
process on its CPU recipe): data-parallel shards over single-threaded workers with the driving
thread at one thread, fused AdamW, one numpy gather per batch instead of a stack of slices, no
host sync per step (the training loss is summed on the device and read at log points only),
validation on the validation split only, and, on a CPU with bf16 units, the precision that a
timed probe of this run's own step finds fastest (see :mod:`.device`).
``torch.compile`` is off by default on CPU: on nanoGPT's CPU recipe it did not help (33.4
against 33.9 ms per step after a 34 s compile, ../shared/data/cpu_baselines/baselines.json).
On CUDA, runs default to bf16 autocast (:mod:`.device`) and, from ``COMPILE_MIN_STEPS``
steps on, ``torch.compile`` (:attr:`TrainConfig.compiles`); ``benchmarks/gpu_train.py``
measures both on a GPU.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from scalinglab._version import __version__
from scalinglab.counting import count_params, flops_per_token
from scalinglab.outputs import check_output
from scalinglab.train.checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    STABLE_NAME,
    save_state,
    starting_state,
)
from scalinglab.train.config import TrainConfig
from scalinglab.train.corpus import Corpus, load_corpus
from scalinglab.train.device import Runtime, default_threads, resolve_runtime
from scalinglab.train.model import GPT, GPTConfig
from scalinglab.train.results import BranchResult, CurvePoint, TrainResult

__all__ = ["CHECKPOINT_NAME", "STABLE_NAME", "train"]

_EVAL_WINDOW_SEED = 0x5CA1E  # fixed: every run of a sweep validates on the same windows


class _Batches:
    """Training batches as a pure function of the step; fixed validation windows."""

    def __init__(self, corpus: Corpus, config: TrainConfig, device: str) -> None:
        self.train = corpus.train_tokens
        self.t = config.shape.context_length
        self.b = config.batch_size
        self.seed = config.seed
        self.device = torch.device(device)
        self.offsets = np.arange(self.t + 1)
        if len(self.train) < self.t + 2:
            raise ValueError(f"training split has {len(self.train)} tokens, fewer than a window")
        val = corpus.val_tokens
        if len(val) < self.t + 1:
            raise ValueError(
                f"validation split has {len(val)} tokens, fewer than one window of {self.t + 1}"
            )
        most = (len(val) - 1) // self.t  # non-overlapping windows that fit
        n = min(most, max(1, config.eval_tokens // self.t))
        if n == most:
            starts = np.arange(n) * self.t
        else:
            # Random but fixed (the same for every run and seed, so runs compare on the same
            # text); evenly spaced starts could alias with a period in the data.
            rng = np.random.default_rng(_EVAL_WINDOW_SEED)
            starts = np.sort(rng.choice(len(val) - self.t, size=n, replace=False))
        self.val_windows = torch.from_numpy(
            np.asarray(val)[starts[:, None] + self.offsets].astype(np.int64)
        )

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.train) - self.t, size=self.b)
        window = torch.from_numpy(self.train[starts[:, None] + self.offsets].astype(np.int64))
        if self.device.type == "cuda":
            window = window.pin_memory().to(self.device, non_blocking=True)
        return window[:, :-1], window[:, 1:]


# --- the loop --------------------------------------------------------------------------------


def _shard_count(config: TrainConfig, device_type: str, threads: int) -> int:
    """How many data-parallel workers a CPU step uses (1: plain intra-op threading).

    On CPU, small matrices scale poorly over intra-op threads, and their barriers stall
    whenever another process takes a core (we saw 2-thread steps 10× slower under load). So
    with ``threads`` > 1 the batch is split into ``threads`` shards, each run by one
    single-threaded worker. Off with dropout (workers would share one random stream, and
    draw from it in whatever order they run) and with torch.compile. Each shard holds its own
    gradient until they are summed, so the count is also capped to keep those within 1 GiB.
    """
    if device_type != "cpu" or config.dropout > 0 or config.compiles:
        return 1
    grad_bytes = 4 * count_params(config.shape).total
    return max(1, min(threads, config.batch_size, (1 << 30) // grad_bytes))


class _Stepper:
    """One optimizer step: plain, or data parallel over single-threaded CPU workers."""

    def __init__(
        self,
        model: GPT,
        optimizer: torch.optim.Optimizer,
        runtime: Runtime,
        config: TrainConfig,
        shards: int,
    ) -> None:
        self.model, self.optimizer, self.runtime = model, optimizer, runtime
        self.grad_clip = config.grad_clip
        self.forward = torch.compile(model) if config.compiles else model
        self.params = list(model.parameters())
        self.shards = shards
        self.pool: ThreadPoolExecutor | None = None
        self.main_threads = torch.get_num_threads()
        if shards > 1:
            self.pool = ThreadPoolExecutor(shards, initializer=torch.set_num_threads, initargs=(1,))
            # The driving thread too: its own OpenMP team, idling after the optimizer's
            # parallel ops, took cores from the workers (a 400-step run of nanoGPT's CPU recipe
            # ran 12,055-13,000 tokens/s with it at two threads, 13,716-15,626 at one).
            torch.set_num_threads(1)

    def _shard_grads(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        with self.runtime.autocast():  # autocast state is per thread: enter it in the worker
            _, loss = self.forward(x, y)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        return loss.detach(), grads

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """Step on the batch ``(x, y)`` at learning rate ``lr``; return its mean loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.runtime.matmul_precision():
            if self.pool is None:
                with self.runtime.autocast():
                    _, loss = self.forward(x, y)
                loss.backward()
            else:
                loss = self._parallel_grads(x, y)
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _parallel_grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Equal shards of the batch, one single-threaded worker each; the weighted sum of shard
        # gradients, in a fixed order, is the full-batch gradient (deterministic, equal to it
        # up to float rounding).
        assert self.pool is not None
        xs, ys = x.tensor_split(self.shards), y.tensor_split(self.shards)
        futures = [self.pool.submit(self._shard_grads, a, b) for a, b in zip(xs, ys, strict=True)]
        results = [f.result() for f in futures]
        weights = [len(a) / len(x) for a in xs]
        loss = sum((w * r[0] for w, r in zip(weights, results, strict=True)), torch.zeros(()))
        for i, p in enumerate(self.params):
            parts = [(w, r[1][i]) for w, r in zip(weights, results, strict=True)]
            parts = [(w, g) for w, g in parts if g is not None]
            grad = parts[0][1].mul(parts[0][0]) if parts else torch.zeros_like(p)
            for w, g in parts[1:]:
                grad.add_(g, alpha=w)
            p.grad = grad
        return loss

    def evaluate(self, batches: _Batches, max_tokens: int | None = None) -> float:
        """Mean next-token loss (nats) over the fixed validation windows (or an evenly strided
        subset of about ``max_tokens``), the batches spread over the workers."""
        windows = batches.val_windows
        if max_tokens is not None:
            keep = max(1, min(len(windows), max_tokens // batches.t))
            windows = windows[:: -(-len(windows) // keep)]
        chunks = [windows[i : i + batches.b] for i in range(0, len(windows), batches.b)]
        device = self.runtime.device

        def summed_loss(w: torch.Tensor) -> torch.Tensor:
            # Grad mode and autocast are per thread: set both in the thread that runs this.
            with torch.no_grad(), self.runtime.autocast():
                w = w.to(device)
                _, loss = self.model(w[:, :-1], w[:, 1:])
            return loss.double() * len(w)

        was_training = self.model.training
        self.model.eval()
        try:
            with self.runtime.matmul_precision():
                if self.pool is None:
                    losses = [summed_loss(w) for w in chunks]
                else:
                    losses = list(self.pool.map(summed_loss, chunks))
        finally:
            self.model.train(was_training)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for loss in losses:  # in window order, so the sum does not depend on the workers
            total += loss
        return float(total.item() / len(windows))

    def close(self) -> None:
        """Stop the workers and give the driving thread its thread count back."""
        if self.pool is not None:
            self.pool.shutdown()
            torch.set_num_threads(self.main_threads)


# Auto precision on a CPU with bf16 units times this many steps per candidate (after one
# warm-up step), and only for runs of at least PROBE_MIN_STEPS steps, where the three probes
# cost at most ≈ 7% of the run, and once per machine and workload (the result is cached).
PROBE_STEPS = 6
PROBE_MIN_STEPS = 300


def _step_timer(config: TrainConfig, batches: _Batches, shards: int) -> Callable[[str], float]:
    """Median seconds per training step of this run's model at a precision, on CPU."""

    def seconds(precision: str) -> float:
        runtime = Runtime("cpu", precision, torch.get_num_threads(), math.nan, "probe")
        model = GPT(GPTConfig(config.shape, dropout=config.dropout))
        stepper = _Stepper(model, _optimizer(model, config), runtime, config, shards)
        x, y = batches(0)
        times = []
        try:
            for _ in range(PROBE_STEPS + 1):
                start = time.perf_counter()
                stepper(x, y, 0.0)
                times.append(time.perf_counter() - start)
        finally:
            stepper.close()
        return statistics.median(times[1:])

    return seconds


def _optimizer(model: GPT, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # Fused AdamW: one kernel for all tensors instead of a dozen small ops per tensor.
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=True)


def _versions() -> dict[str, str]:
    return {
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scalinglab": __version__,
    }


def train(
    config: TrainConfig,
    *,
    checkpoint_dir: Path | str | None = None,
    on_progress: Callable[[CurvePoint], None] | None = None,
    resume_from: Path | str | None = None,
) -> TrainResult:
    """Train the model ``config`` describes and return its curve and final validation loss.

    Parameters
    ----------
    config
        The run.
    checkpoint_dir
        Where to keep ``checkpoint.pt``, written atomically at every evaluation, and for a WSD
        run ``stable.pt``, its state at the end of its stable phase (:mod:`.checkpoints`). If
        it holds a checkpoint of this config, training resumes from it; if that run had
        finished, its result is returned without training.
    on_progress
        Called with every new curve point (about 100 per run, plus evaluations).
    resume_from
        A ``stable.pt`` of another WSD run with this run's stable phase, at or before this
        run's cooldown start: training starts from it instead of from step 0 (when
        ``checkpoint_dir`` holds no checkpoint of this run yet).

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        If the corpus vocabulary exceeds the model's, the device is unavailable, the
        checkpoint belongs to another config, or ``resume_from`` cannot start this run.
    """
    previous_threads = torch.get_num_threads()
    try:
        return _train(config, checkpoint_dir, on_progress, resume_from)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    config: TrainConfig,
    checkpoint_dir: Path | str | None,
    on_progress: Callable[[CurvePoint], None] | None,
    resume_from: Path | str | None,
) -> TrainResult:
    t_start = time.perf_counter()
    if checkpoint_dir is not None:  # a file, or a folder we cannot write: refused before training
        check_output(checkpoint_dir, field="checkpoint_dir", folder=True)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    state = starting_state(config, ckpt_path, resume_from)
    if state is not None and state.get("done"):
        return TrainResult.from_dict(state["result"])
    resumed_tokens = int(state.get("resumed_tokens", 0)) if state else 0
    stable_path = ckpt_path.with_name(STABLE_NAME) if ckpt_path is not None else None

    corpus = load_corpus(
        config.corpus,
        tokenizer=config.tokenizer,
        vocab_size=config.corpus_vocab_size,
        seed=config.corpus_seed,
    )
    shape = config.shape
    if corpus.vocab_size > shape.vocab_size:
        raise ValueError(
            f"corpus {corpus.name!r} has {corpus.vocab_size} token ids but the model's "
            f"vocab_size is {shape.vocab_size}"
        )
    counts = count_params(shape)
    per_token = flops_per_token(shape)
    tps = config.tokens_per_step
    schedule = config.schedule_for_run()
    total = schedule.total_steps
    eval_every = max(1, round((config.eval_interval_tokens or total * tps / 10) / tps))
    log_every = max(1, round((config.log_interval_tokens or total * tps / 100) / tps))
    branch_steps = config.branch_steps()
    # WSD: the last step of the stable phase; the state before it is kept (see .checkpoints).
    stable_end = schedule.cooldown_start if schedule.kind == "wsd" else -1

    device_type = config.device.split(":")[0]
    threads = config.threads or default_threads()
    shards = _shard_count(config, device_type, threads)
    batches = _Batches(corpus, config, config.device if device_type == "cuda" else "cpu")
    # A resumed run keeps the precision its first part chose, so that it retraces one curve.
    precision = state.get("precision", config.precision) if state else config.precision
    probe = device_type == "cpu" and not config.compiles and total >= PROBE_MIN_STEPS
    runtime = resolve_runtime(
        config.device,
        precision,
        threads,
        step_seconds=_step_timer(config, batches, shards) if probe else None,
        workload=f"{shape!r}|batch {config.batch_size}|shards {shards}|dropout {config.dropout}",
    )

    torch.manual_seed(config.seed)
    model = GPT(GPTConfig(shape, dropout=config.dropout)).to(runtime.device)
    optimizer = _optimizer(model, config)

    step, train_time, wall_before = 0, 0.0, 0.0
    curve: list[CurvePoint] = []
    branches: list[BranchResult] = []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if runtime.device_type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        step = int(state["step"])
        train_time, wall_before = float(state["train_time"]), float(state["wall_time"])
        curve = [CurvePoint(**p) for p in state["curve"]]
        branches = [BranchResult(**b) for b in state["branches"]]

    stepper = _Stepper(model, optimizer, runtime, config, shards)
    try:

        def sync() -> None:
            if runtime.device_type == "cuda":
                torch.cuda.synchronize(runtime.device)

        def wall() -> float:
            return wall_before + time.perf_counter() - t_start

        def checkpoint(
            done: bool = False, result: TrainResult | None = None, path: Path | None = ckpt_path
        ) -> None:
            if path is None:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            save_state(
                path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "config": config.to_dict(),
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(runtime.device)
                    if runtime.device_type == "cuda"
                    else None,
                    "train_time": train_time,
                    "wall_time": wall(),
                    "curve": [dataclasses.asdict(p) for p in curve],
                    "branches": [dataclasses.asdict(b) for b in branches],
                    "precision": runtime.precision,
                    "resumed_tokens": resumed_tokens,
                    "stable": path == stable_path,
                    "done": done,
                    "result": result.to_dict() if result is not None else None,
                },
            )

        def run_branch(start: int) -> BranchResult:
            """Cool down from ``start`` as the shorter WSD run would, then put the main run back."""
            saved = (
                copy.deepcopy(model.state_dict()),
                copy.deepcopy(optimizer.state_dict()),
                torch.get_rng_state(),
            )
            sched = schedule.branched(start)
            for k in range(start, sched.total_steps):
                stepper(*batches(k), sched.lr(k))
            val = stepper.evaluate(batches)
            model.load_state_dict(saved[0])
            optimizer.load_state_dict(saved[1])
            torch.set_rng_state(saved[2])
            end_tokens = sched.total_steps * tps
            return BranchResult(
                branch_tokens=start * tps,
                tokens=end_tokens,
                val_loss=val,
                flops_6nd=float(per_token.six_n_total) * end_tokens,
                flops_counted=float(per_token.per_operation) * end_tokens,
            )

        model.train()
        loss_sum = torch.zeros((), device=runtime.device)
        n_summed = 0
        segment = time.perf_counter()
        while step < total:
            if step in branch_steps and all(b.branch_tokens != step * tps for b in branches):
                sync()
                train_time += time.perf_counter() - segment
                branches.append(run_branch(step))
                checkpoint()
                segment = time.perf_counter()
            if step == stable_end and stable_path is not None and not stable_path.exists():
                checkpoint(path=stable_path)  # once: the state every longer run shares
            lr = schedule.lr(step)
            loss_sum += stepper(*batches(step), lr)
            n_summed += 1
            step += 1
            is_eval = step % eval_every == 0 or step == total
            if not (is_eval or step % log_every == 0):
                continue
            sync()
            train_time += time.perf_counter() - segment
            val = None
            if is_eval:
                # The last evaluation uses every window; earlier ones a cheap strided subset.
                cap = None if step == total else eval_every * tps // 4
                val = stepper.evaluate(batches, cap)
            tokens = step * tps
            point = CurvePoint(
                tokens=tokens,
                flops_6nd=float(per_token.six_n_total) * tokens,
                flops_counted=float(per_token.per_operation) * tokens,
                train_loss=float(loss_sum.item()) / n_summed,
                val_loss=val,
                lr=lr,
                wall_s=wall(),
            )
            curve.append(point)
            loss_sum.zero_()
            n_summed = 0
            if is_eval and step < total:
                checkpoint()
            if on_progress is not None:
                on_progress(point)
            segment = time.perf_counter()

        tokens = total * tps
        flops_counted = float(per_token.per_operation) * tokens
        tokens_per_s = tokens / train_time if train_time > 0 else float("nan")
        result = TrainResult(
            config=config,
            params_total=counts.total,
            params_non_embedding=counts.non_embedding,
            tokens=tokens,
            flops_6nd=float(per_token.six_n_total) * tokens,
            flops_counted=flops_counted,
            val_loss=curve[-1].val_loss if curve and curve[-1].val_loss is not None else math.nan,
            curve=tuple(curve),
            branches=tuple(sorted(branches, key=lambda b: b.branch_tokens)),
            tokens_per_s=tokens_per_s,
            mfu=flops_counted / train_time / runtime.peak_flops if train_time > 0 else float("nan"),
            device=runtime.device_name,
            precision=runtime.precision,
            wall_s=wall(),
            versions=_versions(),
            resumed_tokens=resumed_tokens,
        )
        checkpoint(done=True, result=result)
        return result
    finally:
        stepper.close()
