"""What every law form shares: named parameters, bounds, a log-space parametrisation, inputs.

A law is fitted in a *raw* parametrisation: scale parameters (E, A, B, N_c, ...) through their
logarithm, exponents as they are. Positivity then holds by construction and the log prediction of
the additive forms is a log-sum-exp (Hoffmann et al. 2022, App. D.2), which never overflows.

Every law computes, for K parameter vectors at once, the log prediction ``[K, n]`` and its
Jacobian ``[K, P, n]`` with respect to the raw parameters, analytically. The fitter needs nothing
else; the vectorised multi-start and bootstrap optimisers batch over K.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from scalinglab.counting import complete_ndc
from scalinglab.errors import ScalingLabError

__all__ = ["BaseLaw", "Law", "LawError", "logsumexp_rows"]

INPUT_NAMES = ("params", "tokens", "flops", "unique_tokens")


class LawError(ScalingLabError):
    """A law was asked for with unknown options, missing inputs or missing parameters.

    ``field`` names the law option, parameter or input at fault (``"x"``, ``"E"``,
    ``"tokens"``), or ``"law"`` for an unknown law.
    """


@runtime_checkable
class Law(Protocol):
    """The contract every law form meets (see :class:`BaseLaw` for the full implementation)."""

    name: str
    param_names: tuple[str, ...]
    inputs: tuple[str, ...]

    def predict(self, theta: Mapping[str, float], **inputs: ArrayLike) -> np.ndarray: ...


def logsumexp_rows(*terms: np.ndarray, probs: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return log(Σ exp(tᵢ)) and, if ``probs``, the softmax weights exp(tᵢ)/Σ exp(tⱼ).

    Terms broadcast together (a per-row constant may be ``[K, 1]``, so its exp is taken K times,
    not K·n). The sum is first taken directly, which is exact and fastest for the moderate values
    of any sensible law; rows that overflow or underflow are redone with the max-shifted form.
    Hand-written rather than ``scipy.special.logsumexp`` because the fitter needs the softmax
    weights (they are the Jacobian) from the same pass.
    """
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        exps = [np.exp(t) for t in terms]
        total = exps[0]
        for e in exps[1:]:
            total = total + e
        out = np.log(total)
        if np.all(np.isfinite(out)):
            if not probs:
                return out, []
            inv = 1.0 / total
            return out, [e * inv for e in exps]
    shape = np.broadcast_shapes(*(np.shape(t) for t in terms))
    full = [np.broadcast_to(t, shape) for t in terms]
    top = full[0]
    for t in full[1:]:
        top = np.maximum(top, t)
    top = np.where(np.isfinite(top), top, 0.0)
    shifted = [np.exp(t - top) for t in full]
    total = shifted[0]
    for e in shifted[1:]:
        total = total + e
    with np.errstate(divide="ignore"):
        out = top + np.log(total)
    if not probs:
        return out, []
    inv = 1.0 / total
    return out, [e * inv for e in shifted]


class BaseLaw(ABC):
    """A law form: named parameters, natural bounds, raw parametrisation, predict and Jacobian.

    Subclasses set ``name``, ``param_names``, ``inputs``, ``log_params`` (the names fitted
    through their log), ``bounds`` (natural units) and implement :meth:`design`,
    :meth:`log_predict_jac` and :meth:`default_starts`.
    """

    name: ClassVar[str]
    formula: ClassVar[str] = ""
    param_names: tuple[str, ...]
    inputs: tuple[str, ...]
    log_params: frozenset[str]
    bounds: Mapping[str, tuple[float, float]]

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)

    # -- parametrisation ------------------------------------------------------------------------

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def raw_names(self) -> tuple[str, ...]:
        """Names of the raw parameters: ``log_E`` for a log-fitted ``E``, else the name itself."""
        return tuple(f"log_{p}" if p in self.log_params else p for p in self.param_names)

    def _log_mask(self) -> np.ndarray:
        return np.array([p in self.log_params for p in self.param_names])

    def to_raw(self, theta: Mapping[str, float]) -> np.ndarray:
        """Natural parameters (a mapping) to the raw vector, in ``param_names`` order."""
        missing = [p for p in self.param_names if p not in theta]
        if missing:
            raise LawError(
                f"law {self.name!r} needs parameters {', '.join(self.param_names)}; "
                f"missing {', '.join(missing)}",
                field=missing[0],
            )
        values = np.array([float(theta[p]) for p in self.param_names])
        mask = self._log_mask()
        if np.any(values[mask] <= 0):
            names = np.array(self.param_names)
            bad = list(names[mask & (values <= 0)])
            raise LawError(
                f"law {self.name!r}: parameters {', '.join(bad)} must be > 0", field=str(bad[0])
            )
        with np.errstate(divide="ignore"):
            values[mask] = np.log(values[mask])
        return values

    def natural_array(self, raw: ArrayLike) -> np.ndarray:
        """Raw vectors ``[..., P]`` to natural values ``[..., P]``."""
        z = np.array(raw, dtype=float)
        mask = self._log_mask()
        z[..., mask] = np.exp(z[..., mask])
        return z

    def raw_array(self, natural: ArrayLike) -> np.ndarray:
        """Natural vectors ``[..., P]`` to raw vectors ``[..., P]``."""
        x = np.array(natural, dtype=float)
        mask = self._log_mask()
        with np.errstate(divide="ignore"):
            x[..., mask] = np.log(x[..., mask])
        return x

    def from_raw(self, raw: ArrayLike) -> dict[str, float]:
        """A raw vector to a ``{name: natural value}`` dict."""
        values = self.natural_array(np.asarray(raw, dtype=float).reshape(-1))
        return {p: float(v) for p, v in zip(self.param_names, values, strict=True)}

    def raw_bounds(self, bounds: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
        """Bounds ``[P, 2]`` in the raw parametrisation (log of the natural bounds where logged)."""
        merged = {**self.bounds, **(bounds or {})}
        unknown = set(merged) - set(self.param_names)
        if unknown:
            raise LawError(
                f"law {self.name!r} has no parameters {', '.join(sorted(unknown))}; "
                f"its parameters are {', '.join(self.param_names)}",
                field=sorted(unknown)[0],
            )
        out = np.empty((self.n_params, 2))
        for i, p in enumerate(self.param_names):
            lo, hi = (float(v) for v in merged[p])
            if not lo < hi:
                raise LawError(f"bounds of {p} must satisfy low < high, got ({lo}, {hi})", field=p)
            if p in self.log_params:
                if hi <= 0:
                    raise LawError(f"upper bound of {p} must be > 0, got {hi}", field=p)
                lo = np.log(lo) if lo > 0 else -np.inf
                hi = np.log(hi)
            out[i] = lo, hi
        return out

    # -- inputs ---------------------------------------------------------------------------------

    def prepare_inputs(self, inputs: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
        """Check and broadcast the inputs the law needs, deriving one of N, D, C from C = 6·N·D.

        Returns float64 arrays of one common shape.
        """
        unknown = set(inputs) - set(INPUT_NAMES)
        if unknown:
            raise LawError(
                f"unknown inputs {', '.join(sorted(unknown))}; inputs are {', '.join(INPUT_NAMES)}",
                field=sorted(unknown)[0],
            )
        arrays = {k: np.asarray(v, dtype=float) for k, v in inputs.items() if v is not None}
        ndc = [k for k in ("params", "tokens", "flops") if k in arrays]
        needed = [k for k in self.inputs if k not in arrays]
        if needed and len(ndc) == 2 and set(needed) <= {"params", "tokens", "flops"}:
            arrays["params"], arrays["tokens"], arrays["flops"] = complete_ndc(
                arrays.get("params"), arrays.get("tokens"), arrays.get("flops")
            )
            needed = [k for k in self.inputs if k not in arrays]
        if needed:
            raise LawError(
                f"law {self.name!r} needs inputs {', '.join(self.inputs)}; missing "
                f"{', '.join(needed)}",
                field=needed[0],
            )
        shaped = np.broadcast_arrays(*(arrays[k] for k in self.inputs))
        out = dict(zip(self.inputs, (np.asarray(a, dtype=float) for a in shaped), strict=True))
        for k, a in out.items():
            if np.any(~np.isfinite(a)) or np.any(a <= 0):
                raise LawError(f"input {k} must be finite and > 0", field=k)
        return out

    # -- evaluation -----------------------------------------------------------------------------

    @abstractmethod
    def design(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Precompute what does not depend on the parameters (logs of inputs), 1-D arrays."""

    @abstractmethod
    def log_predict_jac(
        self, raw: np.ndarray, design: Mapping[str, np.ndarray], jac: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Log prediction ``[K, n]`` for raw parameters ``[K, P]`` and, if ``jac``, its
        Jacobian ``[K, P, n]`` (parameter-major, so each parameter's row is contiguous) with
        respect to the raw parameters."""

    def weighted_log_hessian(
        self,
        raw: np.ndarray,
        design: Mapping[str, np.ndarray],
        weights: np.ndarray,
        jac: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Σᵢ wᵢ ∇² log L̂ᵢ over points, ``[K, P, P]`` for weights ``[K, n]``, or None.

        ``jac`` is the Jacobian from :meth:`log_predict_jac` at the same ``raw``, if at hand.

        The fitter takes Newton steps with it (quadratic convergence near the optimum, where
        the IRLS majoriser only creeps linearly). This default differentiates the analytic
        Jacobian forward, one extra Jacobian per parameter; laws with a closed form override it.
        """
        raw = np.atleast_2d(np.asarray(raw, dtype=float))
        if jac is None:
            jac = self.log_predict_jac(raw, design)[1]
        assert jac is not None
        k, p = raw.shape
        base = np.einsum("kn,kpn->kp", weights, jac)
        out = np.empty((k, p, p))
        for q in range(p):
            h = 1e-6 * (1.0 + np.abs(raw[:, q]))
            shifted = raw.copy()
            shifted[:, q] += h
            jq = self.log_predict_jac(shifted, design)[1]
            out[:, :, q] = (np.einsum("kn,kpn->kp", weights, jq) - base) / h[:, None]
        return 0.5 * (out + out.transpose(0, 2, 1))

    def log_predict(self, raw: np.ndarray, design: Mapping[str, np.ndarray]) -> np.ndarray:
        """Log prediction ``[K, n]`` for raw parameters ``[K, P]``."""
        return self.log_predict_jac(raw, design, jac=False)[0]

    def log_predict_at(self, raw: ArrayLike, inputs: Mapping[str, ArrayLike]) -> np.ndarray:
        """Log prediction ``[K, *shape]`` of raw parameter rows ``[K, P]`` at ``inputs``.

        The one path from inputs to predictions: the inputs are checked and broadcast
        (:meth:`prepare_inputs` derives one of N, D, C from the other two; inputs given as None
        are ignored), flattened into the design, and predicted for every row. ``shape`` is the
        inputs' broadcast shape. Overflow gives inf, not a warning: a far-off bootstrap row or
        start may overflow, and its caller decides what that means.
        """
        x = self.prepare_inputs(inputs)
        shape = next(iter(x.values())).shape
        design = self.design({k: v.reshape(-1) for k, v in x.items()})
        rows = np.atleast_2d(np.asarray(raw, dtype=float))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out = self.log_predict(rows, design)
        return out.reshape((rows.shape[0], *shape))

    @abstractmethod
    def default_starts(self, design: Mapping[str, np.ndarray], log_loss: np.ndarray) -> np.ndarray:
        """A grid of raw starting points ``[K, P]`` anchored on the data's scale."""

    def predict(self, theta: Mapping[str, float], **inputs: ArrayLike) -> np.ndarray:
        """Loss predicted at ``inputs`` (broadcast together) for parameters ``theta``.

        Any two of ``params``, ``tokens``, ``flops`` stand for the third through C = 6·N·D.
        """
        return np.exp(self.log_predict_at(self.to_raw(theta), inputs)[0])

    def gradient(self, theta: Mapping[str, float], **inputs: ArrayLike) -> np.ndarray:
        """Analytic gradient of the predicted loss with respect to the natural parameters.

        Returns an array of shape ``inputs_shape + (P,)``, columns in ``param_names`` order.
        """
        x = self.prepare_inputs(inputs)
        shape = next(iter(x.values())).shape
        design = self.design({k: v.reshape(-1) for k, v in x.items()})
        raw = self.to_raw(theta)
        logpred, jac = self.log_predict_jac(raw[None, :], design, jac=True)
        assert jac is not None
        scale = np.where(self._log_mask(), np.exp(-raw), 1.0)
        grad = np.exp(logpred[0])[:, None] * jac[0].T * scale[None, :]
        return grad.reshape((*shape, self.n_params))

    def derived(self, theta: Mapping[str, float]) -> dict[str, float]:
        """Quantities derived from the parameters that get a CI of their own (e.g. ``a``)."""
        return {}

    def derived_array(self, natural: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`derived` for natural parameter rows ``[K, P]``."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"get_law({self.name!r}{', ' if opts else ''}{opts})"


def grid(*axes: ArrayLike) -> np.ndarray:
    """Cartesian product of 1-D axes as rows ``[Π len, len(axes)]``."""
    mesh = np.meshgrid(*(np.asarray(a, dtype=float) for a in axes), indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)
