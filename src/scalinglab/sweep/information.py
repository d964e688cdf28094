"""How much a run would tell about a target: the local Fisher (delta-method) approximation.

The fit engine minimises a robust loss of log residuals r = log L − log L̂(θ). Near the optimum
θ̂ the fitted law is close to linear in its raw parameters, so with residual scatter σ the
parameters' covariance is Σ ≈ σ² (JᵀJ)⁻¹, J the Jacobian of log L̂ at the fitted runs, and a
target g(θ) (a log prediction, or log N_opt at a budget) has variance ∇gᵀ Σ ∇g (the delta
method). A new run at x adds the rank-one term j jᵀ/σ² (j = ∇ log L̂(x)) to the information
whatever its loss turns out to be, so the target's variance after it follows in closed form
(Sherman–Morrison) from quantities known now:

    var_after = var_now − (∇gᵀ Σ j)² / (σ² + jᵀ Σ j).

A WSD bundle (a trunk and its cooldowns, several points bought at once) adds the sum of its
points' terms; its drop is the rank-k form of the same update (:func:`group_drops`).
:func:`pick_greedily` spends a budget on the largest drops, one pick at a time, over this model
or any other that says each candidate's drop now and updates itself after a pick.

This is why we chose it over refitting a bootstrap ensemble per candidate: scoring a few hundred
candidates costs one Jacobian each (milliseconds) instead of a few hundred bootstrap fits
(minutes), and it needs no guess of the candidate's loss. Its price: it trusts the local
linearisation, which is rough when the seed runs barely identify the law; the benchmark
(``benchmarks/adaptive_design.py``) measures the actual error as well as the width for that
reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from scalinglab.errors import ScalingLabError
from scalinglab.laws import BaseLaw

__all__ = [
    "Target",
    "TargetError",
    "add_points",
    "gradient",
    "group_drops",
    "jacobian",
    "pick_greedily",
    "posterior",
    "residual_scale",
]

# Scatter below this (in log loss) is treated as this: digitised or averaged losses can sit on
# the curve to 1e-6, and a zero σ would make every run look infinitely informative.
_MIN_SCALE = 1e-4
PRIOR_SD = 1.0


class TargetError(ScalingLabError):
    """A target the law cannot evaluate (unknown inputs, no compute-optimal size in range)."""


@dataclass(frozen=True)
class Target:
    """What the user must decide: a prediction at (N, D), or the compute-optimal N at C.

    Attributes
    ----------
    params, tokens
        The prediction's inputs (``kind == "predict"``).
    flops
        The budget whose compute-optimal model size N_opt is wanted (``kind == "allocation"``).
    """

    kind: str
    params: float | None = None
    tokens: float | None = None
    flops: float | None = None

    @classmethod
    def predict(cls, params: float, tokens: float) -> Target:
        """The loss predicted at N = ``params``, D = ``tokens``."""
        for name, value in (("params", params), ("tokens", tokens)):
            if not np.isfinite(value) or value <= 0:
                raise TargetError(f"target {name} must be a finite number > 0", field="target")
        return cls("predict", params=float(params), tokens=float(tokens))

    @classmethod
    def allocation(cls, flops: float) -> Target:
        """The compute-optimal model size N_opt at ``flops`` (C = 6·N·D)."""
        if not np.isfinite(flops) or flops <= 0:
            raise TargetError(
                f"--for-budget must be a finite number of FLOPs > 0, got {flops!r}",
                field="for_budget",
            )
        return cls("allocation", flops=float(flops))

    @classmethod
    def parse(cls, text: str | Mapping[str, float]) -> Target:
        """``"params=7e10,tokens=1.4e12"`` (or a mapping with those two keys) as a target."""
        if isinstance(text, str):
            pairs: dict[str, str] = {}
            for part in filter(str.strip, text.split(",")):
                key, sep, value = part.partition("=")
                if not sep:
                    raise TargetError(
                        f"target takes params=N,tokens=D; got {part.strip()!r}", field="target"
                    )
                pairs[key.strip()] = value.strip()
        else:
            pairs = dict(text)  # type: ignore[arg-type]
        unknown = sorted(set(pairs) - {"params", "tokens"})
        if unknown or len(pairs) != 2:
            what = f"unknown key {unknown[0]!r}" if unknown else f"got {sorted(pairs)}"
            raise TargetError(f"target takes exactly params=N,tokens=D; {what}", field="target")
        try:
            return cls.predict(float(pairs["params"]), float(pairs["tokens"]))
        except ValueError:
            raise TargetError(
                f"target values must be numbers, got {pairs}", field="target"
            ) from None

    def describe(self) -> str:
        """One line for tables: ``loss at N=7e+10, D=1.4e+12`` or ``N_opt at C=1e+21``."""
        if self.kind == "predict":
            return f"loss at N={self.params:.3g}, D={self.tokens:.3g}"
        return f"N_opt at C={self.flops:.3g} FLOP"


def jacobian(law: BaseLaw, raw: np.ndarray, params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """∇ log L̂ with respect to the raw parameters at each (N, D): ``[n, P]``."""
    design = law.design(law.prepare_inputs({"params": params, "tokens": tokens}))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _, jac = law.log_predict_jac(np.atleast_2d(raw), design)
    assert jac is not None
    return jac[0].T


def residual_scale(law: BaseLaw, raw: np.ndarray, params, tokens, loss) -> float:
    """Robust σ of the log residuals: 1.4826·MAD, as the Huber-fitted law ignores outliers too."""
    log_hat = law.log_predict_at(raw, {"params": params, "tokens": tokens})[0]
    r = np.log(np.asarray(loss, dtype=float)) - log_hat
    mad = float(np.median(np.abs(r - np.median(r))))
    return max(1.4826 * mad, _MIN_SCALE)


def posterior(
    jac: np.ndarray, scale: float, ensemble: np.ndarray | None = None, prior_sd: float = PRIOR_SD
) -> np.ndarray:
    """The raw parameters' covariance Σ from the runs' Jacobian ``[n, P]``.

    Without an ensemble, Σ = (JᵀJ/σ² + I/τ²)⁻¹: the Fisher information of the runs plus a weak
    prior (τ = ``prior_sd`` in raw units: a factor e on a scale parameter, ±1 on an exponent)
    that keeps a law the runs do not yet identify from a singular information matrix; its flat
    directions then carry the prior's large variance, which is what new runs should buy down,
    instead of none (a pseudo-inverse would call them known).

    With ``ensemble`` (the covariance of a bootstrap ensemble of the fit), Σ is that covariance:
    it sees the curvature the linearisation misses when few runs pin the law down (its scale is
    not that of the Fisher update, so :func:`~scalinglab.sweep.suggest.choose_runs` ranks with it
    but reports with the Fisher Σ). Either way, candidates then update Σ by their Fisher
    information.
    """
    if ensemble is not None:
        return ensemble
    info = jac.T @ jac / scale**2 + np.eye(jac.shape[1]) / prior_sd**2
    return linalg.pinvh(info)


def gradient(law: BaseLaw, raw: np.ndarray, target: Target) -> tuple[float, np.ndarray]:
    """The target's value g (log loss, or log N_opt) at ``raw`` and its gradient ∇g ``[P]``."""
    if target.kind == "predict":
        n, d = np.array([target.params]), np.array([target.tokens])
        value = float(law.log_predict_at(raw, {"params": n, "tokens": d})[0, 0])
        return value, jacobian(law, raw, n, d)[0]
    assert target.flops is not None
    u = _log_n_opt(law, raw, target.flops)
    # Implicit function theorem on h(u, θ) = log L̂(e^u, C/(6e^u)): at the optimum h_u = 0, so
    # du*/dθ = −h_uθ / h_uu, from the law's analytic Jacobian at u* ± δ.
    delta = 1e-3
    us = u + np.array([-delta, 0.0, delta])
    n = np.exp(us)
    h = _log_loss_at(law, raw[None], target.flops, us)[0]
    jac = jacobian(law, raw, n, target.flops / (6.0 * n))
    h_uu = (h[0] - 2 * h[1] + h[2]) / delta**2
    h_utheta = (jac[2] - jac[0]) / (2 * delta)
    return u, -h_utheta / h_uu


def _log_loss_at(law: BaseLaw, raw: np.ndarray, flops: float, log_n: np.ndarray) -> np.ndarray:
    n = np.exp(log_n)
    return law.log_predict_at(raw, {"params": n, "tokens": flops / (6.0 * n)})


def _log_n_opt(law: BaseLaw, raw: np.ndarray, flops: float) -> float:
    """log N minimising the law's loss along C = 6·N·D: a grid, then Newton on h_u = 0."""
    # D/N from 1e-3 to 1e6 covers every allocation on record (Chinchilla's optimum is ~20).
    centre = 0.5 * np.log(flops / 6.0)
    grid = centre + np.linspace(-0.5 * np.log(1e6), 0.5 * np.log(1e3), 801)
    values = _log_loss_at(law, raw, flops, grid)[0]
    i = int(np.nanargmin(values))
    if i in (0, len(grid) - 1):
        raise TargetError(
            f"the fitted law has no compute-optimal size at C={flops:.3g} FLOP between "
            "1e-3 and 1e6 tokens per parameter (its loss keeps falling at the edge)",
            field="for_budget",
        )
    u, h = grid[i], 1e-4
    for _ in range(20):
        f = _log_loss_at(law, raw, flops, u + np.array([-h, 0.0, h]))[0]
        slope, curve = (f[2] - f[0]) / (2 * h), (f[2] - 2 * f[1] + f[0]) / h**2
        if curve <= 0:
            break
        step = slope / curve
        u -= step
        if abs(step) < 1e-10:
            break
    return float(u)


def group_drops(
    sigma: np.ndarray, grad: np.ndarray, a: np.ndarray, groups: Sequence[np.ndarray]
) -> np.ndarray:
    """The target variance each candidate removes from ``sigma``, all its points at once.

    A candidate of k points with rows A (j/σ, ``[k, P]``) adds AᵀA to the information; by
    Woodbury the target's variance falls by (AΣg)ᵀ(I + AΣAᵀ)⁻¹(AΣg), the rank-k form of the
    rank-one drop (one run: (jᵀΣg)²/(1 + jᵀΣj)). Candidates of equal k are solved as a batch.
    """
    out = np.zeros(len(groups))
    sizes = np.array([len(g) for g in groups])
    for k in np.unique(sizes):
        which = np.flatnonzero(sizes == k)
        rows = a[np.stack([groups[i] for i in which])]  # [m, k, P]
        sa = rows @ sigma
        v = sa @ grad  # [m, k]
        m = np.eye(k) + sa @ rows.transpose(0, 2, 1)  # [m, k, k]
        out[which] = np.einsum("mk,mk->m", v, np.linalg.solve(m, v[..., None])[..., 0])
    return out


def add_points(sigma: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Σ after the points of Jacobian rows ``rows`` (j/σ): Σ − ΣAᵀ(I + AΣAᵀ)⁻¹AΣ."""
    sa = rows @ sigma
    return sigma - sa.T @ np.linalg.solve(np.eye(len(rows)) + sa @ rows.T, sa)


def pick_greedily(
    start: float,
    drops: Callable[[], np.ndarray],
    bought: Callable[[int], None],
    cost: np.ndarray,
    budget: float,
    k: int,
    per_flop: bool,
    excludes: Sequence[np.ndarray] | None = None,
) -> list[tuple[int, float]]:
    """Budgeted greedy over a variance model: up to ``k`` candidates, each the one whose
    ``drops()`` (the target variance each would remove now) is largest (per FLOP if
    ``per_flop``) among those the budget left still affords; ``bought(i)`` updates the model.
    ``start`` is the target's variance before any pick; ``excludes[i]``, if given, are the
    candidates that buying i rules out (they would train one of its points again). Returns the
    picks and each one's drop."""
    free = np.ones(len(cost), dtype=bool)
    left, picked = budget, []
    for _ in range(k):
        drop = drops()
        ok = free & (cost <= left) & (drop > 1e-9 * start)
        if not ok.any():
            break
        i = int(np.argmax(np.where(ok, drop / cost if per_flop else drop, -np.inf)))
        picked.append((i, float(drop[i])))
        bought(i)
        free[i] = False
        if excludes is not None:
            free[excludes[i]] = False
        left -= cost[i]
    return picked
