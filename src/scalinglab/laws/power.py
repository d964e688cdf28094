"""One-variable power law L(x) = E + A/x^α, x ∈ {N, D, C}; E = 0 gives Kaplan's pure form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from scalinglab.laws._base import BaseLaw, LawError, grid, logsumexp_rows

__all__ = ["X_CHOICES", "PowerLaw"]

# The variables a one-variable law can take (the broken power law takes the same).
X_CHOICES = ("params", "tokens", "flops")


class PowerLaw(BaseLaw):
    """L(x) = E + A/x^α for x = params (N), tokens (D) or flops (C).

    With ``fix_E=True``, E = 0 and the law is Kaplan et al.'s (2020) pure power law
    L = (x_c/x)^α, with A = x_c^α; the fit is then linear in log space.
    """

    name: ClassVar[str] = "power"

    def __init__(self, x: str = "flops", fix_E: bool = False) -> None:
        if x not in X_CHOICES:
            raise LawError(
                f"power law: x must be one of {', '.join(X_CHOICES)}, got {x!r}", field="x"
            )
        super().__init__(x=x, fix_E=bool(fix_E))
        self.x = x
        self.fix_E = bool(fix_E)
        self.param_names = ("A", "alpha") if self.fix_E else ("E", "A", "alpha")
        self.inputs = (x,)
        self.log_params = frozenset({"E", "A"})
        self.bounds = {"A": (1e-12, 1e300), "alpha": (0.0, 5.0)}
        if not self.fix_E:
            self.bounds["E"] = (1e-12, 1e30)

    @property
    def formula(self) -> str:  # type: ignore[override]
        sym = {"params": "N", "tokens": "D", "flops": "C"}[self.x]
        return f"L({sym}) = A/{sym}^alpha" if self.fix_E else f"L({sym}) = E + A/{sym}^alpha"

    def design(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        log_x = np.log(inputs[self.x])
        return {"log_x": log_x, "log_x2": log_x**2}

    def log_predict_jac(self, raw, design, jac=True):
        raw = np.atleast_2d(raw)
        log_x = design["log_x"][None, :]
        if self.fix_E:
            a, alpha = raw[:, 0:1], raw[:, 1:2]
            out = a - alpha * log_x
            if not jac:
                return out, None
            j = np.empty((out.shape[0], 2, out.shape[1]))
            j[:, 0] = 1.0
            j[:, 1] = -log_x
            return out, j
        e, a, alpha = raw[:, 0:1], raw[:, 1:2], raw[:, 2:3]
        out, probs = logsumexp_rows(a - alpha * log_x, e, probs=jac)
        if not jac:
            return out, None
        p_x, p_e = probs
        j = np.empty((out.shape[0], 3, out.shape[1]))
        j[:, 0] = p_e
        j[:, 1] = p_x
        j[:, 2] = -p_x * log_x
        return out, j

    def weighted_log_hessian(self, raw, design, weights, jac=None):
        raw = np.atleast_2d(raw)
        if self.fix_E:
            return np.zeros((raw.shape[0], 2, 2))
        if jac is None:
            jac = self.log_predict_jac(raw, design)[1]
        # LSE of terms linear in the raw parameters: Σ_j p_j v_j v_jᵀ − J Jᵀ.
        w_e, w_x = weights * jac[:, 0], weights * jac[:, 1]
        out = np.zeros((jac.shape[0], 3, 3))
        out[:, 0, 0] = w_e.sum(axis=1)
        out[:, 1, 1] = w_x.sum(axis=1)
        out[:, 1, 2] = out[:, 2, 1] = -(w_x @ design["log_x"])
        out[:, 2, 2] = w_x @ design["log_x2"]
        return out - np.matmul(jac * weights[:, None, :], jac.transpose(0, 2, 1))

    def default_starts(self, design, log_loss):
        loss = np.exp(log_loss)
        x_med = float(np.median(design["log_x"]))
        lmin, lmed = float(loss.min()), float(np.median(loss))
        alphas = np.array([0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5])
        if self.fix_E:
            return np.stack([np.log(lmed) + alphas * x_med, alphas], axis=1)
        g = grid(alphas, (0.02, 0.2, 0.5, 0.75, 0.9, 0.97, 0.995))
        alpha, frac = g.T
        e = frac * lmin
        rest = np.maximum(lmed - e, 1e-3 * lmed)
        return np.stack([np.log(e), np.log(rest) + alpha * x_med, alpha], axis=1)
