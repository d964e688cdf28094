"""Why ``suggest`` misses issue 18's target on Porian: two measurements beside adaptive_design.py.

1. **Fixed designs at half compute.** Can any simple design reach the width IsoFLOP reaches with all
   its compute, with about half of it? Measured on the same cases, seed and width measure as
   ``adaptive_design.py`` (95 % percentile bootstrap by run, 200 resamples): the seed plus

   - ``iso half``: IsoFLOP's runs of every level but the top one (its own state at ~½ C);
   - ``top only``: IsoFLOP's 5 runs of the pool's top level and nothing between;
   - ``top3+below``: the 3 central ones of those and IsoFLOP's 5 of the level below;
   - ``two below``: every in-band run of the two levels below the top one.

   A case counts as reached when a design of at most ½ C is as narrow as IsoFLOP's final width
   and no less accurate (the issue's target).

2. **Which variance tracks the measured width.** Over IsoFLOP's checkpoint sets (from the third
   level on), the correlation of log bootstrap width with the log sd of the target under the
   Fisher model, the sandwich (robust) model of ``adaptive_rankings.py`` and the bootstrap
   ensemble's covariance, over all sets and within each case (logs centred per case).

The search of every design of the pool (not four hand-picked ones) is ``adaptive_search.py``.

    PYTHONPATH=src .venv/bin/python benchmarks/adaptive_ceiling.py [--half A]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from adaptive_cases import Case, iso_points, isoflop_final, load_cases, measure
from adaptive_rankings import Sandwich

from scalinglab.sweep import information as info
from scalinglab.sweep.suggest import _ensemble

DESIGNS = ("iso half", "top only", "top3+below", "two below")


def _designs(case: Case) -> dict[str, list[int]]:
    levels = sorted(case.runs["level"].unique())
    per = {level: iso_points(case, level) for level in levels}
    two = case.runs.index[case.runs["level"].isin(levels[-3:-1])]
    return {
        "iso half": [i for level in levels[:-1] for i in per[level]],
        "top only": per[levels[-1]],
        "top3+below": per[levels[-1]][1:4] + per[levels[-2]],
        "two below": [i for i in two if i in case.in_band],
    }


def ceiling(case: Case) -> dict[str, tuple[float, float, float]]:
    """(compute / IsoFLOP's, width, error) of IsoFLOP's final set and each fixed design."""
    full, total = isoflop_final(case)
    out = {}
    for name, idx in {"iso full": full, **_designs(case)}.items():
        new = [i for i in dict.fromkeys(idx) if i not in case.seed]
        width, error, _ = measure(case, np.array([*case.seed, *new]))
        out[name] = (float(case.runs.loc[new, "flops"].sum()) / total, width, error)
    return out


def tracking(case: Case) -> list[tuple[str, float, float, float, float]]:
    """(case, width, Fisher sd, sandwich sd, ensemble sd) at IsoFLOP's checkpoints."""
    chosen, rows = list(case.seed), []
    for n, level in enumerate(sorted(case.runs["level"].unique())):
        chosen += [i for i in iso_points(case, level) if i not in chosen]
        if n < 2:
            continue
        width, _, (fitted, runs) = measure(case, np.array(chosen))
        law = fitted.law_object
        raw = law.to_raw(fitted.params)
        p, t, loss = runs.column("params"), runs.column("tokens"), runs.column("loss")
        scale = info.residual_scale(law, raw, p, t, loss)
        jac = info.jacobian(law, raw, p, t)
        _, grad = info.gradient(law, raw, case.target)
        residual = np.log(loss) - law.log_predict_at(raw, {"params": p, "tokens": t})[0]
        ensemble = _ensemble(fitted, law)
        rows.append(
            (
                case.name,
                width,
                float(np.sqrt(grad @ info.posterior(jac, scale) @ grad)),
                float(np.sqrt(Sandwich(jac / scale, residual / scale).variance(grad))),
                float(np.sqrt(grad @ ensemble @ grad)) if ensemble is not None else np.nan,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("A", "B"), help="run one half only")
    args = parser.parse_args()
    t0 = time.perf_counter()
    reached = dict.fromkeys(DESIGNS, 0)
    porian, rows = 0, []
    for case in load_cases(half=args.half):
        got = ceiling(case)
        rows += tracking(case)
        _, w_iso, e_iso = got["iso full"]
        ok = {
            name: got[name][0] <= 0.5 and got[name][1] <= w_iso and got[name][2] <= e_iso
            for name in DESIGNS
        }
        if case.name != "chinchilla":
            porian += 1
            for name in DESIGNS:
                reached[name] += ok[name]
        cells = "  ".join(
            f"{name} {c:.2f}C {w:.3f}/{e:.3f}{'*' if ok.get(name) else ''}"
            for name, (c, w, e) in got.items()
        )
        print(f"{case.name:40s} {case.half}  {cells}", flush=True)
    print(
        "Porian configurations where a fixed design of ≤ ½ C reaches IsoFLOP's final width at no "
        "worse error (*): " + ", ".join(f"{name} {reached[name]}/{porian}" for name in DESIGNS)
    )
    table = pd.DataFrame(rows, columns=["case", "width", "fisher", "sandwich", "ensemble"])
    logs = np.log(table[["width", "fisher", "sandwich", "ensemble"]])
    centred = logs - logs.groupby(table["case"]).transform("mean")
    for label, frame in (("all sets", logs), ("within case", centred)):
        corr = frame.corr()["width"]
        print(
            f"log width vs log sd ({len(table)} IsoFLOP checkpoint sets, {label}): "
            f"Fisher {corr['fisher']:.2f}, sandwich {corr['sandwich']:.2f}, "
            f"ensemble {corr['ensemble']:.2f}"
        )
    print(f"{time.perf_counter() - t0:.0f} s wall")


if __name__ == "__main__":
    main()
