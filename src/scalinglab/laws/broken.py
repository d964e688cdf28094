"""A smoothly broken power law in one variable (Caballero et al. 2022, eq. 1 with one break)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from scipy.special import expit

from scalinglab.laws._base import BaseLaw, LawError, grid, logsumexp_rows
from scalinglab.laws.power import X_CHOICES

__all__ = ["BrokenPowerLaw"]


class BrokenPowerLaw(BaseLaw):
    """L(x) = E + A · x^(−α) · (1 + (x/x_b)^(1/f))^(−Δ·f), x = params, tokens or flops.

    Below the break x_b the loss falls as x^(−α), above it as x^(−(α+Δ)); ``smoothness`` f sets
    how many e-folds of x the bend takes ("Broken Neural Scaling Laws", Caballero et al. 2022,
    eq. 1 with n = 1). Δ < 0 is a law that flattens (the small-scale regime is steeper, as when
    warmup and schedule effects inflate the small runs' losses, Porian et al. 2024).

    Fitted as log L = LSE(log E, log A − α·u − Δ·f·softplus((u − log x_b)/f)), u = log x, with
    E, A and x_b through their logarithm.
    """

    name: ClassVar[str] = "broken-power"

    def __init__(self, x: str = "flops", smoothness: float = 1.0) -> None:
        if x not in X_CHOICES:
            raise LawError(
                f"broken power law: x must be one of {', '.join(X_CHOICES)}, got {x!r}", field="x"
            )
        if not (np.isfinite(smoothness) and smoothness > 0):
            raise LawError(
                f"broken power law: smoothness must be > 0, got {smoothness!r}", field="smoothness"
            )
        super().__init__(x=x, smoothness=float(smoothness))
        self.x = x
        self.smoothness = float(smoothness)
        self.param_names = ("E", "A", "alpha", "x_b", "delta")
        self.inputs = (x,)
        self.log_params = frozenset({"E", "A", "x_b"})
        self.bounds = {
            "E": (1e-12, 1e30),
            "A": (1e-12, 1e300),
            "alpha": (0.0, 5.0),
            "x_b": (1e-30, 1e60),
            # α + Δ is the exponent beyond the break: keep it a decay, within the same range.
            "delta": (-5.0, 5.0),
        }

    @property
    def formula(self) -> str:  # type: ignore[override]
        sym = {"params": "N", "tokens": "D", "flops": "C"}[self.x]
        return f"L({sym}) = E + A {sym}^-alpha (1 + ({sym}/{sym}_b)^(1/f))^(-delta f)"

    def design(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"log_x": np.log(inputs[self.x])}

    def log_predict_jac(self, raw, design, jac=True):
        raw = np.atleast_2d(raw)
        e, a, alpha, b, delta = (raw[:, i : i + 1] for i in range(5))
        u = design["log_x"][None, :]
        f = self.smoothness
        z = (u - b) / f
        soft = np.logaddexp(0.0, z)
        term = a - alpha * u - delta * f * soft
        out, probs = logsumexp_rows(term, e, probs=jac)
        if not jac:
            return out, None
        p_t, p_e = probs
        j = np.empty((out.shape[0], 5, out.shape[1]))
        j[:, 0] = p_e
        j[:, 1] = p_t
        j[:, 2] = -p_t * u
        j[:, 3] = p_t * delta * expit(z)
        j[:, 4] = -p_t * f * soft
        return out, j

    def default_starts(self, design, log_loss):
        loss = np.exp(log_loss)
        u = design["log_x"]
        u_med = float(np.median(u))
        lmin, lmed = float(loss.min()), float(np.median(loss))
        breaks = np.quantile(u, (0.25, 0.5, 0.75))
        g = grid(
            (0.02, 0.05, 0.1, 0.2, 0.35, 0.6),
            (-0.3, -0.1, -0.03, 0.03, 0.1),
            breaks,
            (0.3, 0.7, 0.9),
        )
        alpha, delta, b, frac = g.T
        e = frac * lmin
        rest = np.maximum(lmed - e, 1e-3 * lmed)
        f = self.smoothness
        # A so that the decaying term alone is `rest` at the median x.
        a = np.log(rest) + alpha * u_med + delta * f * np.logaddexp(0.0, (u_med - b) / f)
        return np.stack([np.log(e), a, alpha, b, delta], axis=1)
