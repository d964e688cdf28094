"""Speed and quality of scalinglab's fit against the published procedure, measured in one run.

The anchor is a faithful re-implementation of the procedure of Besiroglu et al. (2024,
"Chinchilla Scaling: A replication attempt", data_analysis.ipynb of
github.com/epoch-research/analyzing-chinchilla): the objective is the sum of Huber losses
(δ = 1e-3) of log residuals of log L = LSE(a − α log N, b − β log D, e); scipy's L-BFGS-B,
without an analytic gradient and with its default tolerances, from each of the 4 500 starts
α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}; the lowest objective wins.
Its bootstrap is one such L-BFGS-B refit per resample, started from the full-data optimum.

Those refits stop on scipy's default test (relative reduction of f ≤ 2.2e-9, with |f| floored
at 1, while this objective is ~1e-3) after a dozen iterations, before the resample's optimum: their
percentile CIs describe the start point. The CIs are therefore also compared with a converged
reference: the same objective and L-BFGS-B (numeric gradient) with ftol 0 and gtol 1e-12, on
the first ``--reference`` resamples, the very resamples scalinglab's bootstrap draws.

Printed: both objectives and times and their ratio (target ≥ 100× faster at an equal or lower
objective); both bootstraps' times and ratio (target ≥ 25×); how far apart the percentile CIs
are, as a fraction of the reference CI's width (target ≤ 10%); the time to fit the Chinchilla
form to 10^6 points of synthetic training curves.

    .venv/bin/python benchmarks/fit_speed.py            # the full measurement (many minutes)
    .venv/bin/python benchmarks/fit_speed.py --quick    # a seeded tenth of the published work,
                                                        # its times extrapolated ×10 (labelled)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from scalinglab import fit, load_runs
from scalinglab.fitting import make_objective
from scalinglab.laws import get_law

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "chinchilla_epoch" / "chinchilla_epoch_nd.csv"
PARAMS = ("E", "A", "B", "alpha", "beta")
LAW = get_law("chinchilla")


# --- the published procedure, as written in the notebook --------------------------------------


def _log_sum_exp(a, b, e, alpha, beta, n, d):
    return np.log(np.exp(a - alpha * np.log(n)) + np.exp(b - beta * np.log(d)) + np.exp(e))


def _huber_loss(residuals, delta=1e-3):
    cond = np.abs(residuals) <= delta
    return np.where(cond, 0.5 * residuals**2, delta * (np.abs(residuals) - 0.5 * delta))


def _huber_loss_objective(params, n, d, losses):
    a, b, e, alpha, beta = params
    predictions = _log_sum_exp(a, b, e, alpha, beta, n, d)
    return np.sum(_huber_loss(np.log(losses) - predictions, delta=1e-3))


def published_grid() -> list[list[float]]:
    """The 4 500 starts (a, b, e, α, β) of Besiroglu et al. (2024)."""
    alpha_vals = np.arange(0, 2.5, 0.5)
    beta_vals = np.arange(0, 2.5, 0.5)
    e_vals = np.arange(-1, 1.5, 0.5)
    a_vals = np.arange(0, 30, 5)
    b_vals = np.arange(0, 30, 5)
    return [
        [a, b, e, alpha, beta]
        for alpha, beta, e, a, b in itertools.product(alpha_vals, beta_vals, e_vals, a_vals, b_vals)
    ]


def published_fit(n, d, losses, starts) -> tuple[float, np.ndarray]:
    best_loss, best_params = np.inf, None
    with np.errstate(all="ignore"):
        for init in starts:
            result = minimize(_huber_loss_objective, init, args=(n, d, losses), method="L-BFGS-B")
            if result.fun < best_loss:
                best_loss, best_params = result.fun, result.x
    assert best_params is not None
    return float(best_loss), np.asarray(best_params)


def published_bootstrap(
    n, d, losses, counts, start, options: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One L-BFGS-B refit per resample (rows repeated by their counts), from ``start``.

    ``options`` go to scipy (None: its defaults, as published). Returns natural parameter rows
    (E, A, B, α, β) and the objectives reached.
    """
    out = np.empty((len(counts), 5))
    reached = np.empty(len(counts))
    rows = np.arange(len(losses))
    with np.errstate(all="ignore"):
        for k, c in enumerate(counts):
            idx = np.repeat(rows, c)
            res = minimize(
                _huber_loss_objective,
                start,
                args=(n[idx], d[idx], losses[idx]),
                method="L-BFGS-B",
                options=options,
            )
            a, b, e, alpha, beta = res.x
            out[k] = np.exp(e), np.exp(a), np.exp(b), alpha, beta
            reached[k] = res.fun
    return out, reached


CONVERGED = {"ftol": 0.0, "gtol": 1e-12, "maxiter": 20_000, "maxfun": 200_000}


# --- helpers -----------------------------------------------------------------------------------


def _natural(raw_abeab: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta = raw_abeab
    return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}


def _ci(rows: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    q = [50 * (1 - level), 50 * (1 + level)]
    cols = {name: rows[:, i] for i, name in enumerate(PARAMS)}
    cols["a"] = rows[:, 4] / (rows[:, 3] + rows[:, 4])
    return {k: tuple(float(x) for x in np.percentile(v, q)) for k, v in cols.items()}


def _timed(fn, repeat: int = 1):
    best, value = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t)
    return best, value


def _synthetic_curves(points: int, seed: int = 0):
    """Training curves from the Chinchilla form (Besiroglu et al. 2024 values), 1% noise."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    runs = max(1, points // 1000)
    per = points // runs
    theta = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
    params = np.repeat(10 ** rng.uniform(7, 10.5, runs), per)
    final = np.repeat(10 ** rng.uniform(9, 12, runs), per)
    frac = np.tile(np.geomspace(0.01, 1.0, per), runs)
    tokens = final * frac
    noise = np.exp(rng.normal(0, 0.01, len(params)))
    loss = LAW.predict(theta, params=params, tokens=tokens) * noise
    run_id = np.repeat(np.arange(runs), per).astype(str)
    return pd.DataFrame({"params": params, "tokens": tokens, "loss": loss, "run_id": run_id}), theta


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="chinchilla_epoch_nd.csv")
    parser.add_argument("--bootstrap", type=int, default=4000, help="resamples (4000)")
    parser.add_argument("--points", type=int, default=1_000_000, help="points of the big fit")
    parser.add_argument("--quick", action="store_true", help="a seeded tenth of the anchor")
    parser.add_argument(
        "--reference", type=int, default=100, help="resamples refitted to convergence (100)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2

    runs = load_runs(args.data, drop_top_loss=5)
    assert bool(runs.frame["in_epoch_fit"].all()), "drop_top_loss=5 should leave Epoch's 240 rows"
    n = runs.column("params")
    d = runs.column("tokens")
    losses = runs.column("loss")
    report: dict[str, object] = {"n_runs": len(runs), "quick": args.quick}
    scale = 10.0 if args.quick else 1.0
    rng = np.random.default_rng(args.seed)

    # 1. one fit ---------------------------------------------------------------------------------
    grid = published_grid()
    if args.quick:
        grid = [grid[i] for i in np.sort(rng.choice(len(grid), len(grid) // 10, replace=False))]
    print(f"published procedure: L-BFGS-B from {len(grid)} starts on {len(runs)} runs ...")
    t_pub, (f_pub, x_pub) = _timed(lambda: published_fit(n, d, losses, grid))
    t_pub *= scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit("chinchilla", runs)  # warm caches, imports
        t_ours, ours = _timed(lambda: fit("chinchilla", runs), repeat=5)
    pub_params = _natural(x_pub)
    ratio = t_pub / t_ours
    print(
        f"\none fit\n"
        f"  published: {t_pub:9.2f} s{' (extrapolated ×10)' if args.quick else ''}   "
        f"objective {f_pub:.12g}\n"
        f"  scalinglab:{t_ours:9.3f} s   objective {ours.objective:.12g}\n"
        f"  speed ratio {ratio:,.0f}× (target ≥ 100×); objective "
        f"{'equal or lower' if ours.objective <= f_pub else 'HIGHER'} "
        f"(difference {ours.objective - f_pub:+.3g})"
    )
    for name in PARAMS:
        ours_value = ours.params[name]
        print(f"    {name:6s} published {pub_params[name]:12.6g}   scalinglab {ours_value:12.6g}")
    report["fit"] = {
        "published_seconds": t_pub,
        "published_objective": f_pub,
        "published_params": pub_params,
        "seconds": t_ours,
        "objective": ours.objective,
        "params": dict(ours.params),
        "speed_ratio": ratio,
        "objective_not_higher": bool(ours.objective <= f_pub),
    }

    # 2. bootstrap -------------------------------------------------------------------------------
    k = args.bootstrap
    k_pub = k // 10 if args.quick else k
    k_ref = min(args.reference // (2 if args.quick else 1), k)
    # The same resamples for all: fit() draws multinomial counts from default_rng(seed).
    counts = np.random.default_rng(args.seed).multinomial(
        len(runs), np.full(len(runs), 1.0 / len(runs)), size=k
    )
    print(f"\nbootstrap: {k_pub} single-start L-BFGS-B refits, published tolerances ...")
    t_pub_b, (pub_rows, pub_f) = _timed(
        lambda: published_bootstrap(n, d, losses, counts[:k_pub], x_pub)
    )
    t_pub_b *= k / k_pub
    print(f"  and {k_ref} refits to convergence (the reference for the CIs) ...")
    t_ref, (ref_rows, ref_f) = _timed(
        lambda: published_bootstrap(n, d, losses, counts[:k_ref], x_pub, CONVERGED)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ours_b, boot = _timed(lambda: fit("chinchilla", runs, bootstrap=k, seed=args.seed))
    ours_rows = np.asarray(boot.bootstrap_params)
    objective = make_objective("chinchilla", runs)
    ours_f = np.array(
        [
            objective.values(LAW.raw_array(ours_rows[i])[None], counts[i][None].astype(float))[0]
            for i in range(k_ref)
        ]
    )
    speed_b = t_pub_b / t_ours_b
    print(
        f"  published: {t_pub_b:9.2f} s{' (extrapolated ×10)' if args.quick else ''}\n"
        f"  scalinglab:{t_ours_b:9.3f} s (fit + {k} resamples)\n"
        f"  speed ratio {speed_b:,.1f}× (target ≥ 25×)\n"
        f"  objective reached per resample, relative to the converged reference "
        f"(first {k_ref}):\n"
        f"    published tolerances: median {np.median(pub_f[:k_ref] / ref_f - 1):+.2e}, "
        f"worst {np.max(pub_f[:k_ref] / ref_f - 1):+.2e}\n"
        f"    scalinglab:           median {np.median(ours_f / ref_f - 1):+.2e}, "
        f"worst {np.max(ours_f / ref_f - 1):+.2e}"
    )
    ci_ref = _ci(ref_rows, 0.95)
    ci_ours_ref = _ci(ours_rows[:k_ref], 0.95)
    ci_pub = _ci(pub_rows, 0.95)
    ci_ours = _ci(ours_rows[:k_pub], 0.95)
    print(
        f"  95% percentile CIs on the same {k_ref} resamples; gap = largest difference of an end "
        "as a fraction of the reference width:"
    )
    worst = 0.0
    ci_rows: dict[str, dict[str, object]] = {}
    for name in (*PARAMS, "a"):
        lo_r, hi_r = ci_ref[name]
        lo_o, hi_o = ci_ours_ref[name]
        gap = max(abs(lo_o - lo_r), abs(hi_o - hi_r)) / (hi_r - lo_r)
        worst = max(worst, gap)
        ci_rows[name] = {"reference": [lo_r, hi_r], "scalinglab": [lo_o, hi_o], "gap": gap}
        print(
            f"    {name:6s} converged [{lo_r:10.5g}, {hi_r:10.5g}]   scalinglab "
            f"[{lo_o:10.5g}, {hi_o:10.5g}]   {gap:6.1%}"
        )
    print(f"  largest CI gap {worst:.1%} of the reference width (target ≤ 10%)")
    print(
        f"  with published tolerances, on the same {k_pub} resamples, the CIs collapse onto "
        "the start point:"
    )
    for name in (*PARAMS, "a"):
        lo_p, hi_p = ci_pub[name]
        lo_o, hi_o = ci_ours[name]
        ci_rows[name]["published_tolerances"] = [lo_p, hi_p]
        print(
            f"    {name:6s} published [{lo_p:10.5g}, {hi_p:10.5g}]   scalinglab "
            f"[{lo_o:10.5g}, {hi_o:10.5g}]   width ratio {(hi_o - lo_o) / (hi_p - lo_p):8.1f}"
        )
    report["bootstrap"] = {
        "resamples": k,
        "published_resamples_timed": k_pub,
        "published_seconds": t_pub_b,
        "reference_resamples": k_ref,
        "reference_seconds": t_ref,
        "seconds": t_ours_b,
        "speed_ratio": speed_b,
        "ci": ci_rows,
        "largest_gap_vs_reference": worst,
        "objective_vs_reference": {
            "published_tolerances_median": float(np.median(pub_f[:k_ref] / ref_f - 1)),
            "scalinglab_median": float(np.median(ours_f / ref_f - 1)),
            "scalinglab_worst": float(np.max(ours_f / ref_f - 1)),
        },
    }

    # 3. a million points ------------------------------------------------------------------------
    frame, truth = _synthetic_curves(args.points, args.seed)
    big = load_runs(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_big, big_fit = _timed(lambda: fit("chinchilla", big))
    print(
        f"\n{len(big):,} points ({frame['run_id'].nunique()} training curves): "
        f"fit in {t_big:.2f} s; recovered "
        + ", ".join(f"{p} {big_fit.params[p]:.4g} (true {truth[p]:.4g})" for p in PARAMS)
    )
    report["million"] = {
        "points": len(big),
        "seconds": t_big,
        "params": dict(big_fit.params),
        "truth": truth,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
