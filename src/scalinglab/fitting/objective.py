"""The objective of a fit: a robust loss of log residuals, summed over runs.

Huber with δ = 1e-3 by default (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024), or squared
error, or an asymmetric Huber that fits a lower envelope. With δ = 1e-3 nearly every residual sits
in Huber's linear zone, so the objective is close to a sum of absolute values: flat, kinked, and a
trap for optimisers that stop on a small relative change of the objective (see
:mod:`scalinglab.fitting.optimiser` for how the minimum is found).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from scalinglab.fitting.errors import FitError
from scalinglab.laws import BaseLaw, LawError, get_law
from scalinglab.runs import Runs, as_runs

__all__ = ["LOSSES", "Objective", "RobustLoss", "as_law", "law_inputs", "make_objective"]

LOSSES = ("huber", "mse", "asymmetric")


@dataclass(frozen=True)
class RobustLoss:
    """ρ(r) of a log residual r = log L̂ − log L, with its derivative and IRLS curvature.

    ``huber``: ½r² for |r| ≤ δ, δ(|r| − ½δ) beyond (``scipy.special.huber``).
    ``mse``: r².
    ``asymmetric``: 2·w(r)·huber(r) with w = τ above the data (r > 0) and 1 − τ below, so that
    τ > ½ pushes the law under the data (a lower envelope); τ = ½ is plain Huber.
    """

    kind: str = "huber"
    delta: float = 1e-3
    asymmetry: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise FitError(
                f"loss must be one of {', '.join(LOSSES)}, got {self.kind!r}", field="loss"
            )
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise FitError(
                f"huber_delta must be a finite number > 0, got {self.delta!r}", field="huber_delta"
            )
        if not 0 < self.asymmetry < 1:
            raise FitError(
                f"asymmetry must lie in (0, 1), got {self.asymmetry!r}", field="asymmetry"
            )

    def _side(self, r: np.ndarray) -> np.ndarray:
        return np.where(r > 0, 2.0 * self.asymmetry, 2.0 * (1.0 - self.asymmetry))

    def value(self, r: np.ndarray) -> np.ndarray:
        if self.kind == "mse":
            return r * r
        a = np.abs(r)
        d = self.delta
        h = np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d))
        return h if self.kind == "huber" else self._side(r) * h

    def second(self, r: np.ndarray) -> np.ndarray:
        """ρ''(r) (where it exists; Huber's jump at |r| = δ is taken from inside)."""
        if self.kind == "mse":
            return np.full_like(r, 2.0)
        inside = (np.abs(r) <= self.delta).astype(float)
        return inside if self.kind == "huber" else self._side(r) * inside

    def psi_curvature(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ρ'(r) and the curvature ρ'(r)/r of the tangent parabola that majorises ρ."""
        if self.kind == "mse":
            return 2.0 * r, np.full_like(r, 2.0)
        a = np.abs(r)
        d = self.delta
        inside = a <= d
        psi = np.where(inside, r, d * np.sign(r))
        curv = np.where(inside, 1.0, d / np.maximum(a, d))
        if self.kind == "asymmetric":
            side = self._side(r)
            psi, curv = side * psi, side * curv
        return psi, curv


class Objective:
    """Σᵢ wᵢ ρ(log L̂(xᵢ; θ) − log Lᵢ) for a law on a set of runs, vectorised over θ.

    Other modules reuse it (backtests call it thousands of times): build it once with
    :func:`make_objective`, then evaluate raw parameter rows ``[K, P]``.

    Parameters
    ----------
    law:
        The law form.
    design:
        ``law.design(inputs)`` of the runs.
    log_loss:
        Observed log losses ``[n]``.
    weights:
        Weight per run ``[n]`` (default 1).
    robust:
        The robust loss ρ.
    """

    def __init__(
        self,
        law: BaseLaw,
        design: Mapping[str, np.ndarray],
        log_loss: np.ndarray,
        weights: np.ndarray | None = None,
        robust: RobustLoss | None = None,
    ) -> None:
        self.law = law
        self.design = dict(design)
        self.log_loss = np.asarray(log_loss)
        if self.log_loss.dtype not in (np.float32, np.float64):
            self.log_loss = self.log_loss.astype(float)
        n = self.log_loss.shape[0]
        self.weights = (
            np.ones(n, dtype=self.log_loss.dtype) if weights is None else np.asarray(weights)
        )
        if self.weights.shape != (n,):
            raise FitError(
                f"weights must have one value per run ({n}), got {self.weights.shape}",
                field="weights",
            )
        if np.any(~np.isfinite(self.weights)) or np.any(self.weights < 0):
            raise FitError("weights must be finite and >= 0", field="weights")
        self.robust = robust or RobustLoss()

    @property
    def n_points(self) -> int:
        return self.log_loss.shape[0]

    def subset(self, index: np.ndarray) -> Objective:
        """The same objective on a subset of the runs."""
        design = {k: v[index] for k, v in self.design.items()}
        return Objective(self.law, design, self.log_loss[index], self.weights[index], self.robust)

    def astype(self, dtype: Any) -> Objective:
        """The same objective computed in another float type (float32 to rank starts fast)."""
        design = {k: v.astype(dtype) for k, v in self.design.items()}
        return Objective(
            self.law, design, self.log_loss.astype(dtype), self.weights.astype(dtype), self.robust
        )

    def _w(self, weights: np.ndarray | None) -> np.ndarray:
        return self.weights[None, :] if weights is None else weights

    def values(self, raw: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Objective at raw rows ``[K, P]`` → ``[K]``; ``weights`` ``[K, n]`` override per row."""
        raw = np.atleast_2d(raw)
        with np.errstate(over="ignore", invalid="ignore"):
            r = self.law.log_predict(raw, self.design) - self.log_loss[None, :]
            out = np.sum(self._w(weights) * self.robust.value(r), axis=1)
        return np.where(np.isfinite(out), out, np.inf)

    def derivatives(
        self, raw: np.ndarray, weights: np.ndarray | None = None, newton: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Objective ``[K]``, gradient ``[K, P]``, the IRLS majoriser's Gauss–Newton Hessian
        ``[K, P, P]`` (positive semi-definite) and, when the law gives second derivatives and
        ``newton`` is set, the exact Hessian ``[K, P, P]`` (else None)."""
        raw = np.atleast_2d(raw)
        with np.errstate(over="ignore", invalid="ignore"):
            logpred, jac = self.law.log_predict_jac(raw, self.design, jac=True)
            assert jac is not None
            r = logpred - self.log_loss[None, :]
            w = np.broadcast_to(self._w(weights), r.shape)
            psi, curv = self.robust.psi_curvature(r)
            f = np.sum(w * self.robust.value(r), axis=1)
            wpsi = w * psi
            grad = np.einsum("kn,kpn->kp", wpsi, jac)
            jt = jac.transpose(0, 2, 1)
            hess = np.matmul(jac * (w * curv)[:, None, :], jt)
            exact = None
            if newton:
                second = self.law.weighted_log_hessian(raw, self.design, wpsi, jac)
                if second is not None:
                    rho2 = w * self.robust.second(r)
                    exact = np.matmul(jac * rho2[:, None, :], jt) + second
        return f, grad, hess, exact

    def raw_value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """Objective and gradient at one raw vector (the form scipy.optimize wants)."""
        z = np.asarray(z, dtype=float)[None, :]
        with np.errstate(over="ignore", invalid="ignore"):
            logpred, jac = self.law.log_predict_jac(z, self.design, jac=True)
            assert jac is not None
            r = logpred[0] - self.log_loss
            psi, _ = self.robust.psi_curvature(r)
            f = float(np.sum(self.weights * self.robust.value(r)))
            g = jac[0] @ (self.weights * psi)
        if not np.isfinite(f):
            return float("inf"), np.zeros_like(g)
        return f, g

    def __call__(self, theta: Mapping[str, float]) -> float:
        """Objective at natural parameters ``theta``."""
        return float(self.values(self.law.to_raw(theta)[None, :])[0])


def make_objective(
    law: str | BaseLaw,
    runs: Runs | pd.DataFrame | str | Path,
    *,
    loss: str = "huber",
    huber_delta: float = 1e-3,
    asymmetry: float = 0.9,
    weights: ArrayLike | str | None = None,
    law_options: Mapping[str, Any] | None = None,
) -> Objective:
    """Build the summed robust objective of ``law`` on ``runs`` (see :class:`Objective`).

    ``weights`` is one weight per run, or the name of a column of the runs table.
    """
    law_obj = as_law(law, law_options)
    table = as_runs(runs)
    inputs = law_inputs(law_obj, table)
    design = law_obj.design(inputs)
    robust = RobustLoss(loss, float(huber_delta), float(asymmetry))
    w = _weights(table, weights)
    return Objective(law_obj, design, np.log(table.column("loss")), w, robust)


def as_law(law: str | BaseLaw, options: Mapping[str, Any] | None) -> BaseLaw:
    """A law object from a registry name and its options, or the law object given."""
    if isinstance(law, BaseLaw):
        if options:
            raise FitError(
                "law_options apply to a law name, not to a law object", field="law_options"
            )
        return law
    try:
        return get_law(law, **(options or {}))
    except LawError as exc:
        raise FitError(str(exc), field="law") from None


def law_inputs(law: BaseLaw, runs: Runs) -> dict[str, np.ndarray]:
    """The columns of ``runs`` that ``law`` reads, as float arrays."""
    missing = [c for c in law.inputs if c not in runs.frame.columns]
    if missing:
        raise FitError(
            f"law {law.name!r} needs the column(s) {', '.join(missing)}, which the runs table "
            f"({runs.source}) lacks",
            field=missing[0],
        )
    return {c: runs.column(c).astype(float) for c in law.inputs}


def _weights(runs: Runs, weights: ArrayLike | str | None) -> np.ndarray | None:
    if weights is None:
        return None
    if isinstance(weights, str):
        if weights not in runs.frame.columns:
            raise FitError(f"weights column {weights!r} is not in the runs table", field="weights")
        weights = runs.frame[weights].to_numpy(dtype=float)
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(runs),):
        raise FitError(
            f"weights must have one value per run ({len(runs)}), got shape {w.shape}",
            field="weights",
        )
    if np.any(~np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise FitError("weights must be finite, >= 0, and not all 0", field="weights")
    return w
