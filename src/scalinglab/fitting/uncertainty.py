"""Uncertainty of a fit: the bootstrap over whole runs, percentile intervals, the holdout.

The bootstrap resamples whole runs (rows sharing a ``run_id``) or whole groups; every resample is
a weighted objective (multinomial counts), and all resamples are optimised together, warm-started
from the full-data optimum, in chunks spread over threads (numpy releases the GIL).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from scalinglab.fitting.errors import FitError
from scalinglab.fitting.objective import Objective
from scalinglab.fitting.optimiser import minimize_batch
from scalinglab.laws import BaseLaw
from scalinglab.runs import Runs

__all__ = [
    "bootstrap",
    "bootstrap_notes",
    "holdout_report",
    "holdout_split",
    "percentile_ci",
    "weights_for",
]

# A bootstrap CI of a scale parameter spanning more than this factor marks it weakly identified.
_WEAK_FACTOR = 10.0


def holdout_split(
    runs: Runs, above: float | None, top: float | None
) -> tuple[Runs, Runs | None, float | None, np.ndarray | None]:
    """Split off the runs above a compute threshold: the training runs, the held-out runs, the
    threshold, and the training mask (the last three None without a holdout)."""
    if above is None and top is None:
        return runs, None, None, None
    if above is not None and top is not None:
        raise FitError("give holdout_above or holdout_top, not both", field="holdout_top")
    flops = runs.column("flops")
    if above is not None:
        if not (math.isfinite(above) and above > 0):
            raise FitError(
                f"holdout_above must be a FLOP count > 0, got {above!r}", field="holdout_above"
            )
        threshold = float(above)
    else:
        assert top is not None
        if not 0 < top < 1:
            raise FitError(
                f"holdout_top must be a fraction in (0, 1), got {top!r}", field="holdout_top"
            )
        k = max(1, math.ceil(top * len(runs)))
        threshold = float(np.sort(flops)[::-1][k - 1]) * (1 - 1e-12)
    held = flops > threshold
    if not held.any():
        raise FitError(
            f"no run above {threshold:.3g} FLOP to hold out (largest: {flops.max():.3g} FLOP)",
            field="holdout_above" if above is not None else "holdout_top",
        )
    if held.all():
        raise FitError(
            f"every run is above {threshold:.3g} FLOP: nothing left to fit on (smallest: "
            f"{flops.min():.3g} FLOP)",
            field="holdout_above" if above is not None else "holdout_top",
        )
    train = runs.subset(~held, f"fitted on the runs with flops <= {threshold:.3g}")
    test = runs.subset(held, f"held out: runs with flops > {threshold:.3g}")
    return train, test, threshold, ~held


def holdout_report(
    law: BaseLaw,
    params: Mapping[str, float],
    test: Runs,
    threshold: float,
    n_train: int,
    boot: np.ndarray | None,
    level: float,
) -> dict[str, Any]:
    """Each held-out run's prediction and relative error, their summary, and (with bootstrap
    rows ``boot``) the share of held-out losses inside the prediction intervals."""
    inputs = {c: test.column(c) for c in law.inputs}
    pred = law.predict(params, **inputs)
    obs = test.column("loss")
    rel = pred / obs - 1.0
    report: dict[str, Any] = {
        "threshold_flops": threshold,
        "n_train": n_train,
        "n_holdout": len(test),
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "mean_rel_error": float(np.mean(rel)),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
    }
    rows = []
    lo = hi = None
    if boot is not None and len(boot):
        preds = np.exp(law.log_predict_at(law.raw_array(boot), inputs))
        lo, hi = np.percentile(preds, [50 * (1 - level), 50 * (1 + level)], axis=0)
        report["coverage"] = float(np.mean((obs >= lo) & (obs <= hi)))
    for i in range(len(test)):
        row = {
            "params": float(test.frame["params"].iloc[i]),
            "tokens": float(test.frame["tokens"].iloc[i]),
            "flops": float(test.frame["flops"].iloc[i]),
            "loss": float(obs[i]),
            "predicted": float(pred[i]),
            "rel_error": float(rel[i]),
        }
        if lo is not None and hi is not None:
            row["interval"] = [float(lo[i]), float(hi[i])]
        rows.append(row)
    report["runs"] = rows
    return report


def bootstrap(
    objective: Objective,
    runs: Runs,
    z_best: np.ndarray,
    bounds: np.ndarray,
    k: int,
    *,
    by: str,
    seed: int,
    max_iter: int,
    n_jobs: int | None,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, int]:
    """Raw optima of ``k`` resamples of whole runs (or groups), all optimised together from
    ``z_best``, and how many did not converge. Each resample is a weighted objective."""
    clusters = runs.cluster_ids(by)
    n_clusters = int(clusters.max()) + 1
    if n_clusters < 2:
        raise FitError(
            f"cannot bootstrap by {by}: the runs form a single {by}", field="bootstrap_by"
        )
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=k)
    base = objective.weights[None, :]

    def weights(rows: slice) -> np.ndarray:
        return counts[rows][:, clusters].astype(float) * base

    starts = np.repeat(z_best[None, :], k, axis=0)
    batch = minimize_batch(
        objective,
        starts,
        bounds=bounds,
        weights=weights,
        max_iter=max_iter,
        n_jobs=n_jobs,
        progress=progress,
    )
    return batch.raw, int((~batch.converged).sum())


def weights_for(all_runs: Runs, train_mask: np.ndarray | None, weights: Any) -> Any:
    """Per-run weights restricted to the training runs (a column name needs no restriction)."""
    if weights is None or isinstance(weights, str) or train_mask is None:
        return weights
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(all_runs),):
        raise FitError(
            f"weights must have one value per run ({len(all_runs)}), got {w.shape}",
            field="weights",
        )
    return w[train_mask]


def percentile_ci(
    law: BaseLaw, natural: np.ndarray, level: float
) -> dict[str, tuple[float, float]]:
    q = [50 * (1 - level), 50 * (1 + level)]
    ci: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(law.param_names):
        lo, hi = np.nanpercentile(natural[:, i], q)
        ci[name] = (float(lo), float(hi))
    for name, values in law.derived_array(natural).items():
        lo, hi = np.nanpercentile(values, q)
        ci[name] = (float(lo), float(hi))
    return ci


def bootstrap_notes(
    law: BaseLaw,
    runs: Runs,
    ci: Mapping[str, tuple[float, float]],
    *,
    by: str,
    k: int,
    failed: int,
    max_iter: int,
    level: float,
) -> list[str]:
    """Warnings about a bootstrap: checkpoints resampled alone, refits that did not converge,
    scale parameters whose interval spans more than a factor of ten."""
    notes = []
    if by == "run" and "step" in runs.frame and "run_id" not in runs.frame:
        notes.append(
            "the runs have a step column but no run_id: each checkpoint was resampled on its "
            "own; give run_id so that the checkpoints of one run are resampled together"
        )
    if failed > 0.01 * k:
        notes.append(
            f"{failed} of {k} bootstrap refits did not converge within {max_iter} iterations"
        )
    for name in law.param_names:
        lo, hi = ci[name]
        if name in law.log_params and lo > 0 and hi / lo > _WEAK_FACTOR:
            notes.append(
                f"{name} is weakly identified: its {level:.0%} CI spans a factor "
                f"{hi / lo:.3g} ({lo:.4g} to {hi:.4g})"
            )
    return notes
