"""Extrapolation you can trust: the published procedure beside the default, on real held-out runs.

Both data sets, in one run, with the splits of issue 8:

- Chinchilla (Besiroglu et al. 2024's digitisation of Hoffmann et al. 2022, the 240 rows Epoch
  fits, ``in_epoch_fit``): fit the runs with C ≤ 10^21, predict the 23 larger ones.
- Porian et al. (2024), 15 configurations: fit each configuration's budgets ≤ 1.6·10^18, predict
  its runs at ≥ 1.28·10^19 (8–16× further).

For ``besiroglu2024`` (the published procedure) and the default (``auto``, which chooses by a
backtest inside the fitted runs only), per configuration and overall: mean |relative error| of
the held-out predictions, coverage of the 90 % prediction intervals, the procedure ``auto``
chose and whether the prediction was marked unreliable (with the reason). Then the issue's
targets, each marked met or missed, and the time ratio auto / besiroglu2024 (same run).

    .venv/bin/python benchmarks/extrapolation.py              # bootstrap 100 per fit (minutes)
    .venv/bin/python benchmarks/extrapolation.py --bootstrap 40 --json out.json

``--suite`` runs the broad extrapolation suite of issue 17 instead (every development set and
synthetic families with known truth, leave-one-set-out; see ``extrapolation_suite.py``):

    .venv/bin/python benchmarks/extrapolation.py --suite [--procedures plain,auto] [--sets ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from scalinglab import load_runs
from scalinglab.fitting import FitWarning
from scalinglab.procedures import BacktestResult, backtest
from scalinglab.report.extrapolation import backtest_figure

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
PROCEDURES = ("besiroglu2024", "auto")
LEVEL = 0.9
# The targets for the default procedure.
CHINCHILLA_MAX_ERROR = 0.008
PORIAN_MAX_MEAN_ERROR = 0.03
PORIAN_GROUP_ERROR = 0.05
MIN_COVERAGE = 0.85


def _chinchilla() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "chinchilla_epoch" / "chinchilla_epoch_nd.csv")
    return frame[frame["in_epoch_fit"]].drop(columns="in_epoch_fit").reset_index(drop=True)


def _porian() -> pd.DataFrame:
    return pd.read_csv(DATA / "porian_isoflop" / "porian_isoflop_points.csv")


def _run(name: str, frame: pd.DataFrame, bootstrap: int, **kwargs) -> tuple[BacktestResult, dict]:
    seconds: dict[str, float] = {}
    results = []
    for proc in PROCEDURES:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            results.append(backtest(load_runs(frame), [proc], bootstrap=bootstrap, **kwargs))
        seconds[proc] = time.perf_counter() - t0
        print(f"  {name}: {proc} done in {seconds[proc]:.0f} s", file=sys.stderr, flush=True)
    merged = BacktestResult(
        predictions=pd.concat([r.predictions for r in results], ignore_index=True),
        fits=pd.concat([r.fits for r in results], ignore_index=True),
        level=LEVEL,
        procedures=PROCEDURES,
    )
    return merged, seconds


def _table(result: BacktestResult) -> pd.DataFrame:
    g = result.by_group()
    rows = []
    for group, sub in g.groupby("group", sort=False):
        row: dict = {"configuration": group}
        for proc in PROCEDURES:
            r = sub[sub["procedure"] == proc].iloc[0]
            tag = "pub" if proc == "besiroglu2024" else "def"
            row[f"{tag} |err|"] = f"{100 * r['mean_abs_error']:.2f}%"
            row[f"{tag} cov90"] = f"{100 * r['coverage']:.0f}%"
            row[f"{tag} ok"] = "yes" if r["reliable"] else "NO"
        auto = sub[sub["procedure"] == "auto"].iloc[0]
        row["default chose"] = auto["chosen"]
        rows.append(row)
    return pd.DataFrame(rows)


def _overall(result: BacktestResult) -> pd.DataFrame:
    o = result.overall()
    return pd.DataFrame(
        {
            "procedure": o["procedure"],
            "mean |err| over configs": [f"{100 * v:.2f}%" for v in o["mean_abs_error"]],
            "worst config": [f"{100 * v:.2f}%" for v in o["worst_group_error"]],
            "cov90 (all runs)": [f"{100 * v:.1f}%" for v in o["coverage"]],
            "flagged configs": o["flagged_groups"],
            "predictions": o["n_predictions"],
        }
    )


def _reasons(result: BacktestResult) -> list[str]:
    g = result.by_group()
    out = []
    for r in g[(g["procedure"] == "auto") & ~g["reliable"].astype(bool)].to_dict("records"):
        out.append(f"  {r['group']} ({100 * r['mean_abs_error']:.2f}%): " + "; ".join(r["reasons"]))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--suite" in argv:
        sys.path.insert(0, str(HERE))
        from extrapolation_suite import main as suite_main

        return suite_main([a for a in argv if a != "--suite"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=100, help="resamples per fit")
    parser.add_argument("--json", type=Path, help="write every prediction and fit here")
    parser.add_argument("--figure", type=Path, help="error-vs-extrapolation figure (Porian)")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)

    print("Chinchilla (240 rows in Epoch's fit): fit C <= 1e21, predict the 23 larger runs")
    chin, chin_s = _run("chinchilla", _chinchilla(), args.bootstrap, cuts=[1e21])
    print(_table(chin).to_string(index=False))
    print(_overall(chin).to_string(index=False))
    for line in chin.fits[chin.fits["procedure"] == "auto"]["why"]:
        print(f"  default: {line}")
    print()
    print("Porian et al. (15 configurations): fit budgets <= 1.6e18, predict runs at >= 1.28e19")
    por, por_s = _run(
        "porian", _porian(), args.bootstrap, cuts=[1.6e18], min_factor=8, group_by="group"
    )
    print(_table(por).to_string(index=False))
    print(_overall(por).to_string(index=False))
    flagged = _reasons(por)
    if flagged:
        print("Default predictions marked unreliable, with the reasons:")
        print("\n".join(flagged))
    print()

    c = chin.overall().set_index("procedure").loc["auto"]
    g = por.by_group()
    ga = g[g["procedure"] == "auto"]
    p = por.overall().set_index("procedure").loc["auto"]
    unflagged_bad = ga[(ga["mean_abs_error"] > PORIAN_GROUP_ERROR) & ga["reliable"].astype(bool)]
    checks = [
        (
            f"Chinchilla mean |error| <= {CHINCHILLA_MAX_ERROR:.1%}",
            c["mean_abs_error"] <= CHINCHILLA_MAX_ERROR,
            f"{c['mean_abs_error']:.2%}",
        ),
        (
            f"Porian mean over configurations <= {PORIAN_MAX_MEAN_ERROR:.0%}",
            p["mean_abs_error"] <= PORIAN_MAX_MEAN_ERROR,
            f"{p['mean_abs_error']:.2%}",
        ),
        (
            f"every Porian configuration within {PORIAN_GROUP_ERROR:.0%} or flagged unreliable",
            unflagged_bad.empty,
            f"worst {ga['mean_abs_error'].max():.2%}, "
            f"{len(unflagged_bad)} over {PORIAN_GROUP_ERROR:.0%} unflagged",
        ),
        (
            f"90% intervals cover >= {MIN_COVERAGE:.0%} on Chinchilla",
            c["coverage"] >= MIN_COVERAGE,
            f"{c['coverage']:.1%}",
        ),
        (
            f"90% intervals cover >= {MIN_COVERAGE:.0%} on Porian",
            p["coverage"] >= MIN_COVERAGE,
            f"{p['coverage']:.1%}",
        ),
    ]
    print("Targets for the default procedure (auto):")
    for label, ok, value in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {label}: {value}")
    ratio = (chin_s["auto"] + por_s["auto"]) / (chin_s["besiroglu2024"] + por_s["besiroglu2024"])
    print(
        f"Time, auto / besiroglu2024 (both with their intervals, this run): ×{ratio:.1f} "
        f"(bootstrap {args.bootstrap} per fit)"
    )

    if args.figure is not None:
        backtest_figure(por).savefig(args.figure)
        print(f"figure written to {args.figure}")
    if args.json is not None:
        payload = {"chinchilla": chin.to_dict(), "porian": por.to_dict()}
        args.json.write_text(json.dumps(payload, default=str, indent=1), encoding="utf-8")
        print(f"json written to {args.json}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
