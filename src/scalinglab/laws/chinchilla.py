"""Chinchilla's parametric law L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, eq. 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from scalinglab.laws._base import BaseLaw, grid, logsumexp_rows

__all__ = ["ChinchillaLaw", "chinchilla_starts"]

# Exponents outside (0, 5) describe no language model on record; the bound keeps a flat direction
# from wandering to infinity. Scale bounds are wide enough for any loss measured in nats.
_EXPONENT_BOUNDS = (0.0, 5.0)
_SCALE_BOUNDS = (1e-12, 1e30)


def chinchilla_starts(
    log_n: np.ndarray,
    log_d: np.ndarray,
    log_loss: np.ndarray,
    alphas: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5),
    e_fractions: tuple[float, ...] = (0.05, 0.3, 0.55, 0.75, 0.9, 0.97),
    splits: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9),
) -> np.ndarray:
    """Raw starts (log E, log A, log B, α, β) anchored on the data: 3 000 by default.

    E is a fraction of the smallest loss; the rest of the median loss is split between the N and
    D terms at the median N and D. Every start therefore predicts losses of the data's size,
    which makes a cheap first screen of thousands of starts meaningful.
    """
    loss = np.exp(log_loss)
    lmin, lmed = float(loss.min()), float(np.median(loss))
    n_med, d_med = float(np.median(log_n)), float(np.median(log_d))
    g = grid(alphas, alphas, e_fractions, splits)
    alpha, beta, frac, split = g.T
    e = frac * lmin
    rest = np.maximum(lmed - e, 1e-3 * lmed)
    return np.stack(
        [
            np.log(e),
            np.log(split * rest) + alpha * n_med,
            np.log((1 - split) * rest) + beta * d_med,
            alpha,
            beta,
        ],
        axis=1,
    )


class ChinchillaLaw(BaseLaw):
    """L(N, D) = E + A/N^α + B/D^β.

    Fitted in log-sum-exp form, log L = LSE(log A − α log N, log B − β log D, log E), as
    Hoffmann et al. (2022, App. D.2) and Besiroglu et al. (2024) do. Derived: the compute-optimal
    exponent ``a`` = β/(α+β) (N_opt ∝ C^a).
    """

    name: ClassVar[str] = "chinchilla"
    formula: ClassVar[str] = "L(N, D) = E + A/N^alpha + B/D^beta"

    def __init__(self) -> None:
        super().__init__()
        self.param_names = ("E", "A", "B", "alpha", "beta")
        self.inputs = ("params", "tokens")
        self.log_params = frozenset({"E", "A", "B"})
        self.bounds = {
            "E": _SCALE_BOUNDS,
            "A": _SCALE_BOUNDS,
            "B": _SCALE_BOUNDS,
            "alpha": _EXPONENT_BOUNDS,
            "beta": _EXPONENT_BOUNDS,
        }

    def design(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        log_n, log_d = np.log(inputs["params"]), np.log(inputs["tokens"])
        return {"log_n": log_n, "log_d": log_d, "log_n2": log_n**2, "log_d2": log_d**2}

    def log_predict_jac(self, raw, design, jac=True):
        raw = np.atleast_2d(raw)
        e, a, b, alpha, beta = (raw[:, i : i + 1] for i in range(5))
        log_n, log_d = design["log_n"][None, :], design["log_d"][None, :]
        out, probs = logsumexp_rows(a - alpha * log_n, b - beta * log_d, e, probs=jac)
        if not jac:
            return out, None
        p_n, p_d, p_e = probs
        j = np.empty((out.shape[0], 5, out.shape[1]))
        j[:, 0] = p_e
        j[:, 1] = p_n
        j[:, 2] = p_d
        j[:, 3] = -p_n * log_n
        j[:, 4] = -p_d * log_d
        return out, j

    def weighted_log_hessian(self, raw, design, weights, jac=None):
        # log L = LSE of terms linear in the raw parameters, so
        # ∇² log L = Σ_j p_j v_j v_jᵀ − J Jᵀ with v_j the slopes of term j and J = Σ_j p_j v_j.
        if jac is None:
            jac = self.log_predict_jac(raw, design)[1]
        p_e, p_n, p_d = jac[:, 0], jac[:, 1], jac[:, 2]
        w_e, w_n, w_d = weights * p_e, weights * p_n, weights * p_d
        out = np.zeros((jac.shape[0], 5, 5))
        out[:, 0, 0] = w_e.sum(axis=1)
        out[:, 1, 1] = w_n.sum(axis=1)
        out[:, 1, 3] = out[:, 3, 1] = -(w_n @ design["log_n"])
        out[:, 3, 3] = w_n @ design["log_n2"]
        out[:, 2, 2] = w_d.sum(axis=1)
        out[:, 2, 4] = out[:, 4, 2] = -(w_d @ design["log_d"])
        out[:, 4, 4] = w_d @ design["log_d2"]
        return out - np.matmul(jac * weights[:, None, :], jac.transpose(0, 2, 1))

    def default_starts(self, design, log_loss):
        return chinchilla_starts(design["log_n"], design["log_d"], log_loss)

    def derived(self, theta):
        alpha, beta = float(theta["alpha"]), float(theta["beta"])
        return {"a": beta / (alpha + beta) if alpha + beta > 0 else float("nan")}

    def derived_array(self, natural):
        alpha, beta = natural[:, 3], natural[:, 4]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"a": beta / (alpha + beta)}
