"""Plans you can trust: each procedure's loss error and allocation error side by side, on real runs.

A procedure is used twice: to predict a loss, and to split a budget between parameters N and
tokens D. This benchmark backtests both, per procedure, in one run:

- Porian et al. (2024), 15 configurations: fit each configuration's budgets ≤ 1.6·10^18, predict
  its runs at ≥ 1.28·10^19 (loss), and plan N_opt at those budgets against the paper's IsoFLOP
  minimum (``N_opt_paper``): mean |log10 error| in decades and the share within 25%.
- Chinchilla (Besiroglu et al. 2024's digitisation of Hoffmann et al. 2022, the 240 rows Epoch
  fits): fit C ≤ 10^21, predict the 23 larger runs (loss). No IsoFLOP profile above 10^21 has its
  minimum inside its sizes, so the allocation is judged by the planning fit's a (N_opt ∝ C^a)
  against the published a = 0.51 (Besiroglu et al. 2024; Hoffmann et al. 2022: 0.46–0.50), and,
  fitted on all 240 rows, by the plan at Chinchilla's budget, 5.76·10^23 FLOP (Hoffmann et al.
  trained 70B parameters on 1.4T tokens there).

Then issue 19's targets for the default procedure, each marked met or missed.

    .venv/bin/python benchmarks/allocation.py                     # bootstrap 100 per fit
    .venv/bin/python benchmarks/allocation.py --bootstrap 40 --json out.json

:func:`allocation_table` turns any :class:`~scalinglab.procedures.BacktestResult` into the table
printed here (``benchmarks/extrapolation.py`` uses it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab import allocate, fit, load_runs
from scalinglab.fitting import FitWarning
from scalinglab.plan import Allocation, PlanError
from scalinglab.procedures import (
    DEFAULT_PROCEDURE,
    BacktestResult,
    backtest,
    fit_procedure,
    optimal_params,
    with_planner,
)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
PROCEDURES = tuple(
    dict.fromkeys(
        (
            "besiroglu2024",
            "plain",
            "compute-weighted",
            "frontier",
            "kaplan-frontier",
            "average-frontier",
            "auto",
            DEFAULT_PROCEDURE,
        )
    )
)
# Published values the Chinchilla fits are compared with (named beside them in the output).
PUBLISHED_A = 0.51  # Besiroglu et al. (2024), their refit of Hoffmann et al.'s Approach 3
HOFFMANN_A = (0.46, 0.50)  # Hoffmann et al. (2022), Table 2, Approaches 1–3
CHINCHILLA_FLOPS = 5.76e23  # Hoffmann et al. (2022): Chinchilla, 70B parameters, 1.4T tokens
# Issue 19's targets for the default procedure.
PORIAN_MAX_DECADES = 0.08
PORIAN_MIN_WITHIN_25 = 0.85
CHINCHILLA_A = (0.45, 0.55)
CHINCHILLA_N = (5e10, 1e11)


def _chinchilla() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "chinchilla_epoch" / "chinchilla_epoch_nd.csv")
    return frame[frame["in_epoch_fit"]].drop(columns="in_epoch_fit").reset_index(drop=True)


def _porian() -> pd.DataFrame:
    return pd.read_csv(DATA / "porian_isoflop" / "porian_isoflop_points.csv")


def allocation_table(result: BacktestResult) -> pd.DataFrame:
    """Per procedure: loss error and allocation error of a backtest, side by side."""
    loss = result.overall().set_index("procedure")
    alloc = result.allocation_overall()
    alloc = alloc.set_index("procedure") if not alloc.empty else pd.DataFrame()
    rows = []
    for proc in result.procedures:
        row: dict = {
            "procedure": proc,
            "loss |err|": f"{100 * loss.loc[proc, 'mean_abs_error']:.2f}%",
            "loss cov90": f"{100 * loss.loc[proc, 'coverage']:.0f}%",
        }
        a = alloc.loc[proc] if proc in alloc.index else None
        if a is not None and "n" in a and pd.notna(a["n"]) and a["n"] > 0:
            row["N_opt |log10 err|"] = f"{a['mean_abs_log10_error']:.3f}"
            row["within 25%"] = f"{100 * a['within_25']:.0f}%"
            row["N cov90"] = f"{100 * a['coverage']:.0f}%"
            row["refused"] = f"{int(a['refused'])}/{int(a['n'])}"
        if a is not None and result.published_a is not None and pd.notna(a.get("a_mean")):
            row["a (planner)"] = f"{a['a_mean']:.3f}"
            row[f"|a - {result.published_a:g}|"] = f"{a['a_abs_error']:.3f}"
        planners = result.fits.loc[result.fits["procedure"] == proc, "planner"]
        names = sorted({str(p) for p in planners.dropna()})
        refusing = int(planners.isna().sum())
        row["planned by"] = ", ".join(names) + (f" ({refusing} fits refused)" if refusing else "")
        rows.append(row)
    return pd.DataFrame(rows).fillna("-")


def _plans(
    frame: pd.DataFrame, bootstrap: int, procedures: tuple[str, ...]
) -> tuple[pd.DataFrame, dict, list[str]]:
    """Each procedure fitted on all 240 Chinchilla rows, planning 5.76e23 FLOP."""
    rows, plans, refusals = [], {}, []
    for proc in procedures:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            pf = fit_procedure(proc, load_runs(frame), bootstrap=bootstrap)
        try:
            plan = allocate(pf.fit, CHINCHILLA_FLOPS)
        except PlanError as exc:
            refusals.append(f"  {proc}: {exc}")
            rows.append({"procedure": proc, "planned by": "refused (below)"})
            continue
        plans[proc] = plan
        lo, hi = plan.a_interval or (float("nan"), float("nan"))
        rows.append(
            {
                "procedure": proc,
                "planned by": pf.planner.name,
                "N": f"{plan.params:.3g}",
                "D": f"{plan.tokens:.3g}",
                "D/N": f"{plan.tokens_per_param:.0f}",
                "N 90% interval (decades)": f"{plan.params_decades:.2f}"
                if plan.params_decades
                else "-",
                "a [90%]": f"{plan.a:.3f} [{lo:.3f}, {hi:.3f}]",
            }
        )
    return pd.DataFrame(rows).fillna("-"), plans, refusals


def _cli_default_path(frame: pd.DataFrame, bootstrap: int) -> str:
    """Porian as `scalinglab fit RUNS --out fit.json; scalinglab plan --fit fit.json` does it:
    the published fit (no procedure), its planner, N_opt at the held-out budgets."""
    planned, alone, refused = [], [], 0
    for _, g in frame.groupby("config"):
        train = load_runs(g[g["flops"] <= 1.6e18])
        optima = g[g["flops"] >= 1.28e19].drop_duplicates("flops")
        budgets, n_true = optima["flops"].to_numpy(), optima["N_opt_paper"].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            own = fit("chinchilla", train, bootstrap=bootstrap)
            _, planner = with_planner(own, train, bootstrap=bootstrap)
        alone.extend(np.abs(np.log10(optimal_params(own, budgets) / n_true)))
        if planner.fit is None:
            refused += len(budgets)
            continue
        planned.extend(np.abs(np.log10(optimal_params(planner.fit, budgets) / n_true)))
    err = np.array(planned)
    n = len(err) + refused
    return (
        f"{n} budgets: planner {err.mean():.3f} decades, {np.sum(err <= np.log10(1.25)) / n:.0%} "
        f"within 25%, {refused} refused; the fit alone {np.nanmean(alone):.3f} decades"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=100, help="resamples per fit")
    parser.add_argument("--json", type=Path, help="write every plan and prediction here")
    parser.add_argument(
        "--procedures", default=",".join(PROCEDURES), help="comma-separated (default: all seven)"
    )
    args = parser.parse_args(argv)
    procedures = tuple(args.procedures.split(","))
    pd.set_option("display.width", 220)
    pd.set_option("display.max_colwidth", 80)
    print(f"Default procedure: {DEFAULT_PROCEDURE}; bootstrap {args.bootstrap} per fit")

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        por = backtest(
            load_runs(_porian()),
            procedures,
            cuts=[1.6e18],
            min_factor=8,
            group_by="group",
            bootstrap=args.bootstrap,
            optimum_column="N_opt_paper",
        )
    t0 = time.perf_counter()
    line = _cli_default_path(_porian(), bootstrap=0)
    print(
        "\nPorian, the CLI's default path (scalinglab fit without --procedure, bootstrap 0, then "
        f"scalinglab plan): {line} ({time.perf_counter() - t0:.0f} s)"
    )
    print(
        f"\nPorian et al. (15 configurations): fit <= 1.6e18, predict >= 1.28e19; N_opt against "
        f"N_opt_paper ({time.perf_counter() - t0:.0f} s)"
    )
    print(allocation_table(por).to_string(index=False))

    t0 = time.perf_counter()
    chin_frame = _chinchilla()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        chin = backtest(
            load_runs(chin_frame),
            procedures,
            cuts=[1e21],
            bootstrap=args.bootstrap,
            published_a=PUBLISHED_A,
        )
    print(
        f"\nChinchilla (240 rows): fit C <= 1e21, predict the 23 larger runs; a against "
        f"{PUBLISHED_A} (Besiroglu et al. 2024; Hoffmann et al. 2022: "
        f"{HOFFMANN_A[0]}-{HOFFMANN_A[1]}) ({time.perf_counter() - t0:.0f} s)"
    )
    print(allocation_table(chin).to_string(index=False))
    plans_table, plans, refusals = _plans(chin_frame, args.bootstrap, procedures)
    print(
        f"\nChinchilla, all 240 rows, plan at {CHINCHILLA_FLOPS:.3g} FLOP (Hoffmann et al. "
        "2022 trained 70B parameters on 1.4T tokens there):"
    )
    print(plans_table.to_string(index=False))
    if refusals:
        print("Refused, with the reason:")
        print("\n".join(refusals))

    if args.json is not None:
        payload = {
            "porian": por.to_dict(),
            "chinchilla": chin.to_dict(),
            "chinchilla_plans": {k: v.to_dict() for k, v in plans.items()},
        }
        args.json.write_text(json.dumps(payload, default=str, indent=1), encoding="utf-8")
        print(f"json written to {args.json}")
    # The defaults: `scalinglab fit` fits plain; the procedures API and backtest default to auto.
    defaults = [d for d in dict.fromkeys(("plain", DEFAULT_PROCEDURE)) if d in procedures]
    met = True
    for d in defaults:
        checks = _targets(por, plans.get(d), d)
        print(f"\nTargets for the default procedure ({d}):")
        for label, ok, value in checks:
            print(f"  [{'met' if ok else 'MISSED'}] {label}: {value}")
        met = met and all(ok for _, ok, _ in checks)
    return 0 if met else 1


def _targets(por: BacktestResult, plan: Allocation | None, d: str) -> list[tuple[str, bool, str]]:
    """Issue 19's targets for procedure ``d``: Porian's allocation, Chinchilla's plan."""
    a = por.allocation_overall().set_index("procedure").loc[d]
    return [
        (
            f"Porian mean |log10 error| of N_opt <= {PORIAN_MAX_DECADES}",
            a["mean_abs_log10_error"] <= PORIAN_MAX_DECADES,
            f"{a['mean_abs_log10_error']:.3f} decades",
        ),
        (
            f"Porian share within 25% >= {PORIAN_MIN_WITHIN_25:.0%}",
            a["within_25"] >= PORIAN_MIN_WITHIN_25,
            f"{a['within_25']:.0%} of {int(a['n'])}",
        ),
        (
            f"Chinchilla a within [{CHINCHILLA_A[0]}, {CHINCHILLA_A[1]}]",
            plan is not None and CHINCHILLA_A[0] <= plan.a <= CHINCHILLA_A[1],
            "refused" if plan is None else f"{plan.a:.3f}",
        ),
        (
            f"Chinchilla plan at {CHINCHILLA_FLOPS:.3g}: N within "
            f"[{CHINCHILLA_N[0]:.0e}, {CHINCHILLA_N[1]:.0e}]",
            plan is not None and CHINCHILLA_N[0] <= plan.params <= CHINCHILLA_N[1],
            "refused" if plan is None else f"{plan.params:.3g}",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
