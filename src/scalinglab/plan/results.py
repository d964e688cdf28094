"""What a plan returns: an :class:`Allocation`, a :class:`Comparison`, or a :class:`PlanError`."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scalinglab.counting import TransformerShape
from scalinglab.errors import ScalingLabError
from scalinglab.units import PF_DAY_FLOPS, ComputeCost

__all__ = ["BINDINGS", "Allocation", "Comparison", "PlanError"]


class PlanError(ScalingLabError):
    """A plan that cannot be made: unreachable target, unusable law, bad budget or limit.

    ``field`` names the argument at fault (``"fit"``, ``"flops"``, ``"target_loss"``,
    ``"max_params"``, ...) so that a command line can name its option; ``None`` if none is.
    """


BINDINGS = ("max_params", "max_unique_tokens", "inference")


@dataclass(frozen=True)
class Allocation:
    """One recommended training run: N, D, predicted loss, cost in every unit, and caveats.

    Attributes
    ----------
    budget_flops
        The budget asked for (for :func:`least_compute`, the least compute found). ``flops``
        differs from it when the limits leave part of it unspent, or for an inference-aware plan,
        which trains longer than the budget to save inference compute.
    flops
        Training compute of the recommended run, in FLOP (6·N·D, or counted for a shape).
    params, tokens, tokens_per_param
        N (in the fit's parameter basis), D and D/N.
    loss
        Predicted loss (nats) of the recommended run under the fit's point estimate.
    loss_interval, interval_level
        Percentile interval of the loss the bootstrap resamples predict *for the recommended N
        and D*; ``None`` without a bootstrap.
    params_interval, tokens_interval, flops_interval
        Percentile intervals of the optimum each bootstrap resample would recommend.
    cost
        ``flops`` in PF-days, accelerator-hours, wall days, energy (kWh) and money.
    binding
        ``None`` when no limit changes the plan, else the limits that do, comma-separated, from
        ``"max_params"``, ``"max_unique_tokens"``, ``"inference"``.
    epochs, unique_tokens
        Passes over the data and unique tokens used, when ``max_unique_tokens`` is given.
    inference_tokens, inference_flops, total_flops
        Expected inference tokens, their forward FLOPs (2·N per token, or a third of the
        counted training FLOPs per token) and training plus inference FLOPs.
    unconstrained_params, unconstrained_tokens, unconstrained_loss
        The optimum for the same budget without limits (when a limit was given), so that the
        loss paid for a cap is ``loss - unconstrained_loss``.
    extrapolation
        Decades by which ``params``, ``tokens``, ``tokens_per_param`` and ``flops`` lie outside
        the fit's domain (0 inside, NaN when the fit has no domain).
    warnings
        Human sentences: limits that bind, extrapolation, unknown domain, unmodelled repetition.
    shape
        The nearest real transformer shape when FLOPs were counted for a shape, else ``None``.
    law, method, flops_per_token
        The law's name, ``"closed-form"`` or ``"numerical"``, and ``"6N"`` or
        ``"per-operation"``.
    a, a_interval
        The planning fit's allocation exponent (N_opt ∝ C^a) and its bootstrap interval at
        ``interval_level``: how sure the plan is of the split between N and D.
    """

    budget_flops: float
    flops: float
    params: float
    tokens: float
    tokens_per_param: float
    loss: float
    loss_interval: tuple[float, float] | None
    interval_level: float | None
    params_interval: tuple[float, float] | None
    tokens_interval: tuple[float, float] | None
    flops_interval: tuple[float, float] | None
    cost: ComputeCost
    binding: str | None
    epochs: float | None
    unique_tokens: float | None
    inference_tokens: float | None
    inference_flops: float | None
    total_flops: float
    unconstrained_params: float | None
    unconstrained_tokens: float | None
    unconstrained_loss: float | None
    extrapolation: Mapping[str, float]
    warnings: tuple[str, ...]
    shape: TransformerShape | None
    law: str
    method: str
    flops_per_token: str
    a: float | None = None
    a_interval: tuple[float, float] | None = None

    @property
    def params_decades(self) -> float | None:
        """Width of the interval of N in decades (log10 high/low); None without one."""
        if self.params_interval is None:
            return None
        lo, hi = self.params_interval
        return float(math.log10(hi / lo)) if lo > 0 and hi > 0 else None

    @property
    def pf_days(self) -> float:
        """Training compute in PF-days."""
        return self.cost.pf_days

    @property
    def loss_penalty(self) -> float | None:
        """Loss paid for the limits (nats): ``loss - unconstrained_loss``."""
        if self.unconstrained_loss is None:
            return None
        return self.loss - self.unconstrained_loss

    @property
    def title(self) -> str:
        """A heading naming the law and the interval level, e.g. ``"chinchilla fit (90%
        interval)"``."""
        level = f" ({self.interval_level:.0%} interval)" if self.interval_level else ""
        return f"{self.law} fit{level}"

    def summary(self) -> list[tuple[str, str]]:
        """The plan as (quantity, formatted value) rows, the ones that apply to it.

        What the command line prints and :meth:`_repr_html_` shows: N, D and the loss with
        their intervals, FLOPs, the cost in every unit, the limits that bind and what they
        cost, repetition, inference and the nearest real shape.
        """
        rows = [
            ("parameters N", _with_interval(self.params, self.params_interval, "{:.4g}")),
            ("tokens D", _with_interval(self.tokens, self.tokens_interval, "{:.4g}")),
            ("tokens per parameter", f"{self.tokens_per_param:.1f}"),
        ]
        if self.params_decades is not None:
            rows.append(("interval of N, decades", f"{self.params_decades:.2f}"))
        if self.a is not None and math.isfinite(self.a):
            rows.append(
                ("allocation a (N ∝ C^a)", _with_interval(self.a, self.a_interval, "{:.3f}"))
            )
        rows += [
            ("predicted loss", _with_interval(self.loss, self.loss_interval, "{:.4f}")),
            (
                f"FLOPs ({self.flops_per_token})",
                _with_interval(self.flops, self.flops_interval, "{:.4g}"),
            ),
        ]
        if abs(self.budget_flops - self.flops) > 1e-9 * self.flops:
            rows.append(("budget, FLOPs", f"{self.budget_flops:.4g}"))
        c = self.cost
        rows += [
            ("PF-days", f"{c.pf_days:,.1f}"),
            (f"{c.gpu}-hours at MFU {c.mfu:.0%}", f"{c.gpu_hours:,.0f}"),
            (f"days on {c.count} × {c.gpu}", f"{c.wall_days:,.1f}"),
        ]
        if c.energy_kwh is not None:
            rows.append((f"energy, kWh (PUE {c.pue:g})", f"{c.energy_kwh:,.0f}"))
        if c.cost is not None:
            rows.append(("cost", f"{c.cost:,.0f}"))
        if self.binding:
            rows.append(("binding limits", self.binding))
        if self.loss_penalty is not None:
            rows.append(("loss paid for the limits", f"{self.loss_penalty:+.4f}"))
        if self.epochs is not None:
            rows.append(("epochs over unique tokens", f"{self.epochs:.2f}"))
        if self.inference_flops is not None:
            rows.append(("inference FLOPs", f"{self.inference_flops:.4g}"))
            rows.append(("training + inference FLOPs", f"{self.total_flops:.4g}"))
        if self.shape is not None:
            s = self.shape
            rows.append(
                (
                    "nearest real shape",
                    f"{s.n_layer} layers × d_model {s.d_model}, {s.n_head} heads",
                )
            )
        rows.append(("method", self.method))
        return rows

    def _repr_html_(self) -> str:
        """The plan as an HTML table with its warnings, for notebooks."""
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
            f"<td style='text-align:right'>{html.escape(value)}</td></tr>"
            for label, value in self.summary()
        )
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.warnings)
        return (
            f"<div><strong>Plan: {html.escape(self.title)}</strong>"
            f"<table>{cells}</table>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>"
        )

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready mapping (intervals as ``*_low``/``*_high``, NaN as ``None``)."""
        out: dict[str, Any] = {
            "law": self.law,
            "budget_flops": self.budget_flops,
            "flops": self.flops,
            "pf_days": self.cost.pf_days,
            "params": self.params,
            "tokens": self.tokens,
            "tokens_per_param": self.tokens_per_param,
            "loss": self.loss,
            "interval_level": self.interval_level,
        }
        for name, interval in (
            ("loss", self.loss_interval),
            ("params", self.params_interval),
            ("tokens", self.tokens_interval),
            ("flops", self.flops_interval),
        ):
            out[f"{name}_low"] = None if interval is None else interval[0]
            out[f"{name}_high"] = None if interval is None else interval[1]
        out.update(
            binding=self.binding,
            epochs=self.epochs,
            unique_tokens=self.unique_tokens,
            inference_tokens=self.inference_tokens,
            inference_flops=self.inference_flops,
            total_flops=self.total_flops,
            unconstrained_params=self.unconstrained_params,
            unconstrained_tokens=self.unconstrained_tokens,
            unconstrained_loss=self.unconstrained_loss,
            loss_penalty=self.loss_penalty,
            params_interval_decades=self.params_decades,
            a=self.a,
            a_low=None if self.a_interval is None else self.a_interval[0],
            a_high=None if self.a_interval is None else self.a_interval[1],
        )
        cost = self.cost.to_dict()
        cost.pop("flops")
        cost.pop("pf_days")
        out.update(cost)
        for key, decades in self.extrapolation.items():
            out[f"extrapolation_{key}"] = decades
        out.update(
            method=self.method,
            flops_per_token=self.flops_per_token,
            shape=None if self.shape is None else dict(self.shape.__dict__),
            warnings=list(self.warnings),
        )
        return {k: _none_if_nan(v) for k, v in out.items()}


@dataclass(frozen=True)
class Comparison:
    """Compute-equivalent multiplier of recipe B over recipe A at each budget.

    Attributes
    ----------
    flops
        Budgets C (FLOP) at which A is evaluated.
    multiplier
        k(C): B reaches at C/k the loss A reaches at C. k > 1 means B is worth k× compute;
        0 means B never reaches that loss.
    interval, level
        Percentile interval of k from paired bootstrap resamples (resample i of A with
        resample i of B), or ``None`` unless both fits carry a bootstrap.
    loss_a, loss_b
        Compute-optimal loss of A and of B at C.
    flops_b
        Least compute with which B reaches ``loss_a`` (C/k).
    law_a, law_b
        The laws compared.
    warnings
        Budgets outside either fit's domain, and unreachable losses.
    """

    flops: np.ndarray
    multiplier: np.ndarray
    interval: tuple[np.ndarray, np.ndarray] | None
    level: float | None
    loss_a: np.ndarray
    loss_b: np.ndarray
    flops_b: np.ndarray
    law_a: str
    law_b: str
    warnings: tuple[str, ...] = field(default=())

    def to_frame(self) -> pd.DataFrame:
        """One row per budget: flops, pf_days, multiplier (+ interval), losses, flops_b."""
        frame = pd.DataFrame(
            {
                "flops": self.flops,
                "pf_days": self.flops / PF_DAY_FLOPS,
                "multiplier": self.multiplier,
                "multiplier_low": np.nan if self.interval is None else self.interval[0],
                "multiplier_high": np.nan if self.interval is None else self.interval[1],
                "loss_a": self.loss_a,
                "loss_b": self.loss_b,
                "flops_b": self.flops_b,
            }
        )
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping: ``level``, laws, warnings and ``rows`` (one dict per budget)."""
        rows = [
            {k: _none_if_nan(v) for k, v in row.items()}
            for row in self.to_frame().to_dict(orient="records")
        ]
        return {
            "law_a": self.law_a,
            "law_b": self.law_b,
            "level": self.level,
            "rows": rows,
            "warnings": list(self.warnings),
        }


def _with_interval(value: float, interval: tuple[float, float] | None, fmt: str) -> str:
    """``value`` in ``fmt``, followed by its interval unless both ends print the same."""
    text = fmt.format(value)
    if interval is not None and fmt.format(interval[0]) != fmt.format(interval[1]):
        text += f"  [{fmt.format(interval[0])}, {fmt.format(interval[1])}]"
    return text


def _none_if_nan(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
