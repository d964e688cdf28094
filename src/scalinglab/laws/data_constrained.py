"""Muennighoff et al.'s (2023) data-constrained law: Chinchilla with repeated epochs decaying.

    L(N, D) = E + A/N'^α + B/D'^β
    D' = U_D + U_D·R_D*·(1 − exp(−R_D/R_D*)),  U_D = min(D, unique tokens),  R_D = D/U_D − 1
    N' = U_N + U_N·R_N*·(1 − exp(−R_N/R_N*)),  U_N = min(N, U_D/k),            R_N = N/U_N − 1

R_D* is how many repetitions of the data are worth fitting (the "half-life" of repeated tokens);
R_N* likewise for parameters in excess of what U_D unique tokens can feed. Muennighoff et al. take
U_N as the compute-optimal size for U_D tokens; here that is U_D/k with ``tokens_per_param`` k
(default 20, the Chinchilla rule of thumb of Hoffmann et al. 2022), which keeps the law
differentiable in closed form. The excess-parameter term is off unless ``excess_params=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from scalinglab.laws._base import BaseLaw, LawError, logsumexp_rows
from scalinglab.laws.chinchilla import chinchilla_starts

__all__ = ["DataConstrainedLaw", "effective_count"]


def effective_count(unique: np.ndarray, repeats: np.ndarray, r_star: float) -> np.ndarray:
    """U + U·R*·(1 − exp(−R/R*)): the worth of ``unique`` items seen ``1 + repeats`` times."""
    return unique * (1.0 + r_star * -np.expm1(-repeats / r_star))


def _log_effective(log_u, repeats, log_r_star, jac):
    """log of :func:`effective_count` and its derivative with respect to log R*."""
    r_star = np.exp(log_r_star)
    x = repeats / r_star
    seen = -np.expm1(-x)
    gain = r_star * seen
    out = log_u + np.log1p(gain)
    if not jac:
        return out, None
    # d/dR* [R*(1 − e^{−x})] = (1 − e^{−x}) − x·e^{−x}; times R* for the log parametrisation.
    d = r_star * (seen - x * np.exp(-x)) / (1.0 + gain)
    return out, d


class DataConstrainedLaw(BaseLaw):
    """Chinchilla's law on effective data D' (and optionally effective parameters N')."""

    name: ClassVar[str] = "data-constrained"
    formula: ClassVar[str] = (
        "L(N, D) = E + A/N'^alpha + B/D'^beta, D' = U_D(1 + R_D*(1 - exp(-R_D/R_D*)))"
    )

    def __init__(self, excess_params: bool = False, tokens_per_param: float = 20.0) -> None:
        if not tokens_per_param > 0:
            raise LawError(
                f"tokens_per_param must be > 0, got {tokens_per_param!r}", field="tokens_per_param"
            )
        super().__init__(
            excess_params=bool(excess_params), tokens_per_param=float(tokens_per_param)
        )
        self.excess_params = bool(excess_params)
        self.tokens_per_param = float(tokens_per_param)
        names = ["E", "A", "B", "alpha", "beta", "R_D_star"]
        if self.excess_params:
            names.append("R_N_star")
        self.param_names = tuple(names)
        self.inputs = ("params", "tokens", "unique_tokens")
        self.log_params = frozenset({"E", "A", "B", "R_D_star", "R_N_star"})
        self.bounds = {
            "E": (1e-12, 1e30),
            "A": (1e-12, 1e30),
            "B": (1e-12, 1e30),
            "alpha": (0.0, 5.0),
            "beta": (0.0, 5.0),
            "R_D_star": (1e-3, 1e6),
        }
        if self.excess_params:
            self.bounds["R_N_star"] = (1e-3, 1e6)

    def design(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        params, tokens = inputs["params"], inputs["tokens"]
        u_d = np.minimum(tokens, inputs["unique_tokens"])
        u_n = np.minimum(params, u_d / self.tokens_per_param)
        return {
            "log_n": np.log(params),
            "log_d": np.log(tokens),
            "log_ud": np.log(u_d),
            "r_d": np.maximum(tokens / u_d - 1.0, 0.0),
            "log_un": np.log(u_n),
            "r_n": np.maximum(params / u_n - 1.0, 0.0),
        }

    def log_predict_jac(self, raw, design, jac=True):
        raw = np.atleast_2d(raw)
        e, a, b, alpha, beta, rd = (raw[:, i : i + 1] for i in range(6))
        log_dp, d_rd = _log_effective(design["log_ud"][None, :], design["r_d"][None, :], rd, jac)
        if self.excess_params:
            rn = raw[:, 6:7]
            log_np, d_rn = _log_effective(
                design["log_un"][None, :], design["r_n"][None, :], rn, jac
            )
        else:
            log_np, d_rn = np.broadcast_to(design["log_n"][None, :], log_dp.shape), None
        t_n = a - alpha * log_np
        t_d = b - beta * log_dp
        out, probs = logsumexp_rows(t_n, t_d, e, probs=jac)
        if not jac:
            return out, None
        p_n, p_d, p_e = probs
        j = np.empty((out.shape[0], self.n_params, out.shape[1]))
        j[:, 0] = p_e
        j[:, 1] = p_n
        j[:, 2] = p_d
        j[:, 3] = -p_n * log_np
        j[:, 4] = -p_d * log_dp
        j[:, 5] = -p_d * beta * d_rd
        if self.excess_params:
            j[:, 6] = -p_n * alpha * d_rn
        return out, j

    def default_starts(self, design, log_loss):
        base = chinchilla_starts(
            design["log_n"],
            design["log_ud"],
            log_loss,
            alphas=(0.15, 0.3, 0.5, 0.8),
            e_fractions=(0.3, 0.7, 0.9),
            splits=(0.25, 0.75),
        )
        stars = [np.log([1.0, 5.0, 15.0, 60.0])]
        if self.excess_params:
            stars.append(np.log([1.0, 5.0, 30.0]))
        combos = np.stack(np.meshgrid(*stars, indexing="ij"), axis=-1).reshape(-1, len(stars))
        rows = np.repeat(base, len(combos), axis=0)
        tails = np.tile(combos, (len(base), 1))
        return np.concatenate([rows, tails], axis=1)

    def derived(self, theta):
        alpha, beta = float(theta["alpha"]), float(theta["beta"])
        return {"a": beta / (alpha + beta) if alpha + beta > 0 else float("nan")}

    def derived_array(self, natural):
        alpha, beta = natural[:, 3], natural[:, 4]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"a": beta / (alpha + beta)}
