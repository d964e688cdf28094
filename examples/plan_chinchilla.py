"""Plan Chinchilla's run from a fit: allocation, a parameter cap, inference, a frontier, a gain.

Run: ``python examples/plan_chinchilla.py`` (a second, no network). With the reference data beside
the repository (``../shared/data``) it also fits the 240 digitised Chinchilla runs itself.

The published law is Besiroglu et al.'s (2024) refit of Hoffmann et al. (2022):
E = 1.8172, A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab import Fit, allocate, compare, frontier, least_compute

BESIROGLU = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
CHINCHILLA_FLOPS = 5.76e23  # Hoffmann et al. (2022): Chinchilla's training compute


def main() -> None:
    fit = Fit.from_params("chinchilla", BESIROGLU)

    plan = allocate(fit, CHINCHILLA_FLOPS, gpu="a100-80gb", mfu=0.5, price_per_gpu_hour=2.0)
    print(
        f"5.76e23 FLOP: N = {plan.params:.3g}, D = {plan.tokens:.3g} "
        f"({plan.tokens_per_param:.1f} tokens/param), loss {plan.loss:.4f}, "
        f"{plan.pf_days:,.0f} PF-days, {plan.cost.gpu_hours:,.0f} A100-hours, "
        f"{plan.cost.energy_kwh:,.0f} kWh, ${plan.cost.cost:,.0f}"
    )

    capped = allocate(fit, CHINCHILLA_FLOPS, max_params=3e10)
    print(
        f"capped at 3e10 params: D = {capped.tokens:.3g}, loss {capped.loss:.4f} "
        f"(+{capped.loss_penalty:.4f} for the cap)"
    )

    for tokens in (1e12, 1e13, 1e14):
        served = allocate(fit, CHINCHILLA_FLOPS, inference_tokens=tokens)
        print(
            f"serving {tokens:.0e} tokens: N = {served.params:.3g}, D = {served.tokens:.3g}, "
            f"training {served.flops:.3g} FLOP, training + inference {served.total_flops:.3g}"
        )

    need = least_compute(fit, 2.0)
    print(f"loss 2.0 needs {need.flops:.3g} FLOP at N = {need.params:.3g}")

    table = frontier(fit, np.geomspace(1e19, 1e25, 7))
    print(table[["flops", "params", "tokens", "tokens_per_param", "loss"]].to_string(index=False))

    # A recipe worth 2× compute: L_B(N, D) = L_A(√2·N, √2·D).
    better = dict(BESIROGLU, A=BESIROGLU["A"] * 2 ** -(BESIROGLU["alpha"] / 2))
    better["B"] = BESIROGLU["B"] * 2 ** -(BESIROGLU["beta"] / 2)
    gain = compare(fit, Fit.from_params("chinchilla", better), [1e21, 1e24])
    print("compute-equivalent multiplier:", np.round(gain.multiplier, 6))

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_epoch"
    if (data / "chinchilla_epoch_nd.csv").exists():
        import scalinglab
        from scalinglab.runs import load_runs

        frame = pd.read_csv(data / "chinchilla_epoch_nd.csv")
        frame = frame[frame["in_epoch_fit"]]
        runs = load_runs(frame, columns={"params": "N", "tokens": "D", "flops": "C"})
        ours = allocate(scalinglab.fit("chinchilla", runs), CHINCHILLA_FLOPS)
        print(f"our fit of the 240 runs: N = {ours.params:.3g}, D = {ours.tokens:.3g}")
        for warning in ours.warnings:
            print("  note:", warning)


if __name__ == "__main__":
    main()
