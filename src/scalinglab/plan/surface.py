"""A fit reduced to the loss surfaces planning evaluates: its point estimate and resamples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scalinglab.errors import ScalingLabError
from scalinglab.fitting import Fit, load_fit
from scalinglab.fitting.allocation import planning_fit
from scalinglab.laws import Law, LawError, get_law
from scalinglab.plan.results import PlanError

__all__ = ["Surface", "load_surface"]


@dataclass(frozen=True)
class Surface:
    """A fit reduced to what planning needs: its law and parameter rows.

    ``rows[0]`` is the point estimate, ``rows[1:]`` the usable bootstrap resamples (rows with
    a non-finite value dropped), columns in ``law.param_names`` order.
    """

    fit: Fit
    law: Law
    rows: np.ndarray
    kind: str  # "nd": a law of params and tokens (maybe unique_tokens); "c": of flops alone
    batched: bool  # the law evaluates many parameter rows at once (see _batched_predict)
    # Why the surface is not the fit given: a procedure's fit plans with the member (or
    # candidate) that tells N from D (scalinglab.fitting.allocation.planning_fit).
    notes: tuple[str, ...] = ()

    @property
    def chinchilla(self) -> bool:
        return self.law.name == "chinchilla"

    @property
    def repeats(self) -> bool:
        """The law models repeated data (it takes ``unique_tokens``)."""
        return "unique_tokens" in self.law.inputs

    @property
    def n_boot(self) -> int:
        return len(self.rows) - 1

    def theta(self, k: int) -> dict[str, float]:
        return dict(zip(self.law.param_names, (float(v) for v in self.rows[k]), strict=True))

    def evaluate(self, ks: np.ndarray, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Loss ``[K, m]`` of parameter rows ``ks`` at ``inputs`` ``[K, m]`` (row j with ks[j])."""
        if self.batched:
            return _batched_predict(self.law, self.rows[ks], inputs)
        out = np.empty(np.shape(next(iter(inputs.values()))))
        for j, k in enumerate(ks):
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                out[j] = self.law.predict(
                    self.theta(int(k)), **{n: v[j] for n, v in inputs.items()}
                )
        return out

    def loss(
        self,
        ks: np.ndarray,
        params: np.ndarray,
        tokens: np.ndarray,
        unique_cap: float | None = None,
    ) -> np.ndarray:
        """Loss ``[K, m]`` of rows ``ks`` at ``params``/``tokens`` ``[K, m]``.

        ``unique_cap`` is the cap on unique tokens of a data-constrained law (the data seen are
        ``min(D, cap)`` unique tokens); laws without repetition ignore it.
        """
        params, tokens = np.broadcast_arrays(
            np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        )
        inputs = {"params": params, "tokens": tokens}
        if self.repeats:
            inputs["unique_tokens"] = (
                tokens if unique_cap is None else np.minimum(tokens, unique_cap)
            )
        return self.evaluate(ks, inputs)

    def loss_of_flops(self, ks: np.ndarray, flops: np.ndarray) -> np.ndarray:
        """Loss ``[K, m]`` of a law of compute alone."""
        return self.evaluate(ks, {"flops": np.asarray(flops, dtype=float)})

    def irreducible(self, k: int = 0) -> float:
        """The loss no compute goes below: E where the law has one, else 0."""
        theta = self.theta(k)
        return float(theta.get("E", 0.0))


def load_surface(fit: Fit | str | Path, *, need: str = "nd") -> Surface:
    """Resolve ``fit`` (a Fit or a fit.json path) to a :class:`Surface`, checking the law."""

    if isinstance(fit, str | Path):
        if not Path(fit).is_file():
            raise PlanError(f"no fit file at {fit}", field="fit")
        try:
            fit = load_fit(fit)  # checked key by key; the message names the file and key
        except ScalingLabError as exc:
            raise PlanError(f"cannot read the fit: {exc}", field="fit") from None
    # A procedure's fit plans with the fit that tells N from D, or not at all; a law of compute
    # alone has no split to get wrong, so comparing by it (need="any") stays allowed.
    planner, note = planning_fit(fit)
    notes: tuple[str, ...] = ()
    if planner is not None:
        fit, notes = planner, (() if note is None else (note,))
    elif need == "nd" or _splits(fit):
        raise PlanError(f"this fit must not plan: {note}", field="fit")
    try:
        law = get_law(fit.law, **dict(fit.law_options or {}))
    except LawError as exc:
        raise PlanError(f"the fit's law cannot be used: {exc}", field="fit") from exc
    missing = [p for p in law.param_names if p not in fit.params]
    if missing:
        raise PlanError(
            f"the fit of law {law.name!r} lacks parameters {', '.join(missing)}; "
            f"planning needs {', '.join(law.param_names)}",
            field="fit",
        )
    inputs = set(law.inputs)
    if {"params", "tokens"} <= inputs:
        kind = "nd"
    elif inputs == {"flops"}:
        kind = "c"
    else:
        kind = "other"
    if kind == "other" or (need == "nd" and kind != "nd"):
        what = "params and tokens" if need == "nd" else "params and tokens, or of flops"
        options = ", ".join(f"{k}={v!r}" for k, v in dict(fit.law_options or {}).items())
        raise PlanError(
            f"law {law.name!r}{f' ({options})' if options else ''} predicts loss from "
            f"{', '.join(law.inputs)} only; this needs a law of {what} "
            "(chinchilla, kaplan-nd, data-constrained)",
            field="fit",
        )
    point = np.array([float(fit.params[p]) for p in law.param_names])
    if not np.all(np.isfinite(point)):
        raise PlanError(f"the fit's parameters are not all finite: {dict(fit.params)}", field="fit")
    for name, value in zip(law.param_names, point, strict=True):
        # An exponent <= 0 means loss does not fall with N or D: no allocation is optimal, and
        # the solvers would only produce NaN (then blamed on the budget).
        if name.startswith(("alpha", "beta")) and kind == "nd" and value <= 0:
            raise PlanError(
                f"the fit's exponent {name} = {value:g} is not > 0: loss would not fall with "
                "more parameters or tokens, so no compute-optimal plan exists",
                field="fit",
            )
    rows = point[None, :]
    boot = getattr(fit, "bootstrap_params", None)
    if boot is not None:
        boot = np.asarray(boot, dtype=float)
        if boot.ndim == 2 and boot.shape[1] == len(point) and len(boot):
            boot = boot[np.all(np.isfinite(boot), axis=1)]
            rows = np.concatenate([rows, boot], axis=0)
    return Surface(fit=fit, law=law, rows=rows, kind=kind, batched=_batches(law, rows), notes=notes)


def _splits(fit: Fit) -> bool:
    """Whether ``fit``'s law splits a budget between N and D (a law of params and tokens)."""
    try:
        law = get_law(fit.law, **dict(fit.law_options or {}))
    except LawError:
        return False
    return {"params", "tokens"} <= set(law.inputs)


def _batched_predict(law: Any, rows: np.ndarray, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Loss ``[K, m]`` for K parameter rows, each at its own m inputs, in one law evaluation.

    The laws' ``log_predict`` takes raw parameters ``[K, P]`` and broadcasts them against the
    design's arrays; a design of ``[K, m]`` arrays therefore pairs row k with inputs k and gives
    ``[1, K, m]``. One call replaces K calls of ``predict``, which matters for bootstraps of a
    thousand resamples. :func:`_batches` checks this against ``predict`` before it is relied on.
    """
    design = law.design({name: np.asarray(v, dtype=float) for name, v in inputs.items()})
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_loss = law.log_predict(law.raw_array(rows), design)
        return np.exp(np.reshape(log_loss, np.shape(next(iter(inputs.values())))))


def _batches(law: Any, rows: np.ndarray) -> bool:
    """Whether :func:`_batched_predict` agrees with ``law.predict`` row by row."""
    if not all(hasattr(law, name) for name in ("design", "log_predict", "raw_array")):
        return False
    # Three distinct parameter rows (scaled copies of the point estimate stay valid), each
    # with its own inputs, so that a mispairing of rows and inputs would show.
    probe = rows[0][None, :] * np.array([[1.0], [1.05], [0.95]])
    scales = np.array([[1e7, 3e9, 2e11], [5e8, 1e10, 4e12], [2e6, 8e8, 6e13]])
    inputs = {name: scales * (1.0 + 0.5 * i) for i, name in enumerate(law.inputs)}
    if "unique_tokens" in inputs:
        inputs["unique_tokens"] = np.minimum(inputs["unique_tokens"], inputs["tokens"] / 3.0)
    try:
        batched = _batched_predict(law, probe, inputs)
        single = np.stack(
            [
                law.predict(
                    dict(zip(law.param_names, probe[j], strict=True)),
                    **{name: v[j] for name, v in inputs.items()},
                )
                for j in range(len(probe))
            ]
        )
    except (ValueError, TypeError, IndexError, KeyError):
        return False
    return batched.shape == single.shape and bool(np.allclose(batched, single, rtol=1e-12))
