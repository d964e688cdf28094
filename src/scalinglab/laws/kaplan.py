"""Kaplan et al.'s joint law L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (2020, eq. 1.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from scalinglab.laws._base import BaseLaw, grid, logsumexp_rows

__all__ = ["KaplanNDLaw"]


class KaplanNDLaw(BaseLaw):
    """L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D.

    Kaplan et al. (2020, eq. 1.5, Table 2) report α_N = 0.076, α_D = 0.103, N_c = 6.4·10^13,
    D_c = 1.8·10^13 for non-embedding N. Fitted as
    log L = α_D · LSE((α_N/α_D)(log N_c − log N), log D_c − log D).
    """

    name: ClassVar[str] = "kaplan-nd"
    formula: ClassVar[str] = "L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D"

    def __init__(self) -> None:
        super().__init__()
        self.param_names = ("N_c", "D_c", "alpha_N", "alpha_D")
        self.inputs = ("params", "tokens")
        self.log_params = frozenset({"N_c", "D_c"})
        # α_D divides: keep it away from 0.
        self.bounds = {
            "N_c": (1e-30, 1e300),
            "D_c": (1e-30, 1e300),
            "alpha_N": (1e-4, 5.0),
            "alpha_D": (1e-3, 5.0),
        }

    def derived(self, theta):
        # N_opt ∝ C^(α_D/(α_N+α_D)): minimise (N_c/N)^(α_N/α_D) + D_c·6N/C over N.
        a_n, a_d = float(theta["alpha_N"]), float(theta["alpha_D"])
        return {"a": a_d / (a_n + a_d) if a_n + a_d > 0 else float("nan")}

    def derived_array(self, natural):
        a_n, a_d = natural[:, 2], natural[:, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"a": a_d / (a_n + a_d)}

    def design(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"log_n": np.log(inputs["params"]), "log_d": np.log(inputs["tokens"])}

    def log_predict_jac(self, raw, design, jac=True):
        raw = np.atleast_2d(raw)
        nc, dc, a_n, a_d = (raw[:, i : i + 1] for i in range(4))
        log_n, log_d = design["log_n"][None, :], design["log_d"][None, :]
        ratio = a_n / a_d
        gap_n = nc - log_n
        u_n = ratio * gap_n
        u_d = dc - log_d
        s, probs = logsumexp_rows(u_n, u_d, probs=jac)
        out = a_d * s
        if not jac:
            return out, None
        p_n, p_d = probs
        j = np.empty((out.shape[0], 4, out.shape[1]))
        j[:, 0] = a_n * p_n
        j[:, 1] = a_d * p_d
        j[:, 2] = p_n * gap_n
        j[:, 3] = s - p_n * u_n
        return out, j

    def default_starts(self, design, log_loss):
        # Choose N_c, D_c so that each term alone gives a fraction of the median loss at the
        # median N and D: (N_c/N_med)^α_N = f·L_med.
        lmed = float(np.median(np.exp(log_loss)))
        n_med, d_med = float(np.median(design["log_n"])), float(np.median(design["log_d"]))
        g = grid((0.03, 0.07, 0.15, 0.3, 0.6), (0.03, 0.07, 0.15, 0.3, 0.6), (0.3, 0.6, 0.9))
        a_n, a_d, frac = g.T
        level = np.log(frac * lmed)
        return np.stack([n_med + level / a_n, d_med + level / a_d, a_n, a_d], axis=1)
