"""The inner (nested) backtest: procedures backtested inside the runs they are given.

For each inner cut f, every single recipe is fitted on the runs with C ≤ C_max/f and predicts the
runs above that lie near the frontier. Only the runs given are read, so a choice made from it (see
:mod:`scalinglab.procedures.choice`) behaves the same on a user's new data as on ours, and runs
above an outer cut cannot change it. Averages are scored from their members' predictions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from scalinglab.fitting import FitError, FitWarning
from scalinglab.procedures.errors import BacktestError
from scalinglab.procedures.recipes import fit_recipe, near_frontier_mask
from scalinglab.procedures.registry import Procedure, get_procedure
from scalinglab.runs import Runs

__all__ = [
    "INCLUSIVE",
    "INNER_CUTS",
    "SCORE_TOLERANCE",
    "InnerBacktest",
    "extrapolation_growth",
    "inner_backtest",
    "member_weights",
    "runs_inputs",
]

# Inner cuts: the fitted runs ≤ C_max/f are fitted and those above predicted, for each f. Three
# origins give extrapolation factors from 1 to 8, and a choice that must hold at each of them.
INNER_CUTS: tuple[float, ...] = (2.0, 4.0, 8.0)
# Inner predictions are scored on the runs within this fraction of the lowest loss at their
# compute: the runs a user extrapolates to lie near the compute-optimal frontier, and a huge model
# trained on a few million tokens (loss 9 where the frontier is at 4) would otherwise decide.
SCORE_TOLERANCE = 0.10
# A cut includes the runs at its compute even when C_max/2^k is a rounding error off a budget.
INCLUSIVE = 1 + 1e-9


def runs_inputs(runs: Runs) -> dict[str, np.ndarray]:
    """The inputs of every law (N, D, C) of ``runs``, as float arrays."""
    return {c: runs.column(c).astype(float) for c in ("params", "tokens", "flops")}


def extrapolation_growth(log_errors: np.ndarray, factors: np.ndarray, scatter: float) -> float:
    """Extra log error per e-fold of extrapolation factor: the k of ``k · ln x``.

    k² = Σ max(e² − s², 0) / Σ (ln x)², with s the run-to-run scatter: the part of the inner
    errors ``log_errors`` (at extrapolation factors ``factors``) the scatter does not explain,
    spread over the log factors (a ratio of sums, so the far predictions count most). NaN
    without a finite error beyond the fitted runs.
    """
    e = np.asarray(log_errors, dtype=float)
    x = np.asarray(factors, dtype=float)
    ok = np.isfinite(e) & (x > 1)
    if not ok.any():
        return float("nan")
    lx2 = np.log(x[ok]) ** 2
    excess = np.maximum(e[ok] ** 2 - scatter**2, 0.0)
    return float(math.sqrt(excess.sum() / max(lx2.sum(), 1e-300)))


@dataclass(frozen=True)
class InnerBacktest:
    """Inner backtest of procedures on the fitted runs only.

    Attributes
    ----------
    errors:
        Mean |log error| of each procedure's inner predictions (inf where it could not be fitted).
    log_errors, factors:
        Each procedure's signed log errors and extrapolation factors, pooled over inner cuts.
    cut_errors:
        Each procedure's mean |log error| at each inner cut (in ``cuts_flops`` order).
    cuts_flops:
        The inner cuts used (FLOP).
    n_scored:
        Inner predictions scored per procedure.
    member_errors:
        Mean |log error| of each single recipe fitted (the members of averages among them),
        pooled over every inner cut: what a backtest-weighted average of them weighs by.
    cut_ids:
        Which inner cut (an index into ``cuts_flops``) each inner prediction comes from, in
        the order of every procedure's ``log_errors`` (every procedure predicts the same runs):
        errors of one cut share one fit, so they are not independent.
    continued:
        Whether each inner prediction, in that same order, is a later checkpoint of a run
        (``run_id``) whose earlier checkpoints were fitted at that cut: a continuation along
        the run's own schedule, not a prediction of a new run.
    """

    errors: Mapping[str, float]
    log_errors: Mapping[str, np.ndarray]
    factors: Mapping[str, np.ndarray]
    cut_errors: Mapping[str, tuple[float, ...]]
    cuts_flops: tuple[float, ...]
    n_scored: int
    member_errors: Mapping[str, float]
    cut_ids: np.ndarray
    continued: np.ndarray

    def growth(self, name: str, scatter: float) -> float:
        """Extra log error per e-fold of extrapolation factor of procedure ``name`` (see
        :func:`extrapolation_growth`)."""
        return extrapolation_growth(
            self.log_errors.get(name, np.zeros(0)), self.factors.get(name, np.zeros(0)), scatter
        )


def _singles(proc: Procedure) -> list[Procedure]:
    if proc.kind == "single":
        return [proc]
    names = proc.members if proc.kind == "average" else proc.candidates
    out: list[Procedure] = []
    for n in names:
        for p in _singles(get_procedure(n)):
            if p.name not in {q.name for q in out}:
                out.append(p)
    return out


def _combine(
    proc: Procedure, member_logs: Mapping[str, np.ndarray], member_err: Mapping[str, float]
) -> np.ndarray | None:
    """Log prediction of a single or average procedure from its members' log predictions."""
    if proc.kind == "single":
        return member_logs.get(proc.name)
    logs = [member_logs.get(m) for m in proc.members]
    if any(v is None for v in logs):
        return None
    w = member_weights(proc, member_err)
    return np.sum([wi * v for wi, v in zip(w, logs, strict=True)], axis=0)


def member_weights(proc: Procedure, member_err: Mapping[str, float]) -> np.ndarray:
    """Weights of an average's members: equal, or ∝ 1/err² of their inner backtest errors."""
    k = len(proc.members)
    if proc.weighting == "equal":
        return np.full(k, 1.0 / k)
    err = np.array([member_err.get(m, np.inf) for m in proc.members], dtype=float)
    with np.errstate(divide="ignore"):
        inv = np.where(np.isfinite(err), 1.0 / np.maximum(err, 1e-6) ** 2, 0.0)
    if inv.sum() <= 0:
        return np.full(k, 1.0 / k)
    return inv / inv.sum()


def inner_backtest(
    procedures: Sequence[str | Procedure],
    runs: Runs,
    *,
    cuts: Sequence[float] = INNER_CUTS,
    score_tolerance: float = SCORE_TOLERANCE,
    refine: int = 8,
    n_jobs: int | None = None,
) -> InnerBacktest:
    """Backtest ``procedures`` inside ``runs``: for each f in ``cuts``, fit on the runs with
    C ≤ C_max/f and predict the runs above that lie near the frontier.

    Only ``runs`` are read; nothing above their largest compute matters. Single recipes shared by
    several procedures (members of averages, candidates) are fitted once per cut.

    Parameters
    ----------
    procedures:
        Single or average procedures (an ``auto`` is expanded to its candidates).
    runs:
        The fitted runs.
    cuts:
        Divisors of the largest compute, each > 1.
    score_tolerance:
        Inner predictions are scored on runs within this fraction of the lowest loss at their
        compute (see :data:`SCORE_TOLERANCE`).
    refine:
        Starts refined per inner fit. Fewer than a full fit's 64: these fits are many, and on
        the reference data 8 reached the same optima in half the time.
    """
    procs = []
    for p in procedures:
        p = get_procedure(p)
        if p.kind == "auto":
            procs.extend(get_procedure(c) for c in p.candidates)
        else:
            procs.append(p)
    singles: list[Procedure] = []
    for p in procs:
        for s in _singles(p):
            if s.name not in {q.name for q in singles}:
                singles.append(s)
    flops = runs.column("flops")
    loss = runs.column("loss")
    c_max = float(flops.max())
    frontier = near_frontier_mask(flops, loss, score_tolerance)
    run_ids = runs.frame["run_id"].to_numpy() if "run_id" in runs.frame else None
    logs: dict[str, list[np.ndarray]] = {p.name: [] for p in procs}
    facs: dict[str, list[np.ndarray]] = {p.name: [] for p in procs}
    ids: list[np.ndarray] = []
    cont: list[np.ndarray] = []
    single_errs: dict[str, list[np.ndarray]] = {s.name: [] for s in singles}
    used_cuts: list[float] = []
    n_scored = 0
    for f in sorted(cuts, reverse=True):
        if not f > 1:
            raise BacktestError(
                f"inner cuts must be > 1 (divisors of the largest compute), got {f}",
                field="inner_cuts",
            )
        cut = c_max / f
        train_mask = flops <= cut * INCLUSIVE
        test_mask = ~train_mask & frontier
        if not test_mask.any() or train_mask.sum() < 2:
            continue
        train = runs.subset(train_mask)
        test = runs.subset(test_mask)
        inputs = runs_inputs(test)
        obs = np.log(test.column("loss"))
        factor = test.column("flops") / float(train.column("flops").max())
        # Weights of a backtest-weighted average at this origin come from the deeper origins
        # only (cuts run deepest first): the runs it is scored on must not set its weights.
        member_err = {
            k: float(np.mean(np.abs(np.concatenate(v)))) for k, v in single_errs.items() if v
        }
        member_logs: dict[str, np.ndarray] = {}
        for s in singles:
            try:
                # Inner fits are many and disposable: their FitWarnings would drown the user;
                # what matters from them reaches the choice and the intervals.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FitWarning)
                    f_ = fit_recipe(s, train, refine=refine, n_jobs=n_jobs)
            except (FitError, ValueError):
                continue
            lp = f_.log_predict(**inputs)
            member_logs[s.name] = lp
            single_errs[s.name].append(lp - obs)
        if not member_logs:
            continue  # no recipe can be fitted on so few runs: this origin says nothing
        used_cuts.append(cut)
        n_scored += int(test_mask.sum())
        ids.append(np.full(int(test_mask.sum()), len(used_cuts) - 1))
        cont.append(
            np.zeros(int(test_mask.sum()), dtype=bool)
            if run_ids is None
            else np.isin(run_ids[test_mask], run_ids[train_mask])
        )
        for p in procs:
            lp = _combine(p, member_logs, member_err)
            if lp is None:
                logs[p.name].append(np.full(obs.shape, np.inf))
            else:
                logs[p.name].append(lp - obs)
            facs[p.name].append(factor)
    if not used_cuts:
        raise BacktestError(
            f"no inner cut among C_max/{', C_max/'.join(f'{c:g}' for c in cuts)} leaves runs on "
            f"both sides ({len(runs)} runs, C from {flops.min():.3g} to {c_max:.3g} FLOP)",
            field="inner_cuts",
        )
    errors: dict[str, float] = {}
    log_errors: dict[str, np.ndarray] = {}
    factors: dict[str, np.ndarray] = {}
    cut_errors: dict[str, tuple[float, ...]] = {}
    for p in procs:
        cut_errors[p.name] = tuple(
            float(np.mean(np.abs(e))) if np.all(np.isfinite(e)) else math.inf for e in logs[p.name]
        )
        e = np.concatenate(logs[p.name]) if logs[p.name] else np.zeros(0)
        log_errors[p.name] = e
        factors[p.name] = np.concatenate(facs[p.name]) if facs[p.name] else np.zeros(0)
        errors[p.name] = float(np.mean(np.abs(e))) if e.size and np.all(np.isfinite(e)) else np.inf
    return InnerBacktest(
        errors=MappingProxyType(errors),
        log_errors=MappingProxyType(log_errors),
        factors=MappingProxyType(factors),
        cut_errors=MappingProxyType(cut_errors),
        cuts_flops=tuple(used_cuts),
        n_scored=n_scored,
        member_errors=MappingProxyType(
            {k: float(np.mean(np.abs(np.concatenate(v)))) for k, v in single_errs.items() if v}
        ),
        cut_ids=np.concatenate(ids),
        continued=np.concatenate(cont),
    )
