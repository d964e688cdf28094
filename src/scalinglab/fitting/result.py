"""The :class:`Fit` value: a fitted law, immutable, with its uncertainty and diagnostics, and its
JSON form (:meth:`Fit.save`, :func:`load_fit`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from scalinglab.errors import ScalingLabError
from scalinglab.fitting.errors import FitError
from scalinglab.fitting.fitfile import checked_fit_fields
from scalinglab.laws import BaseLaw, LawError, get_law
from scalinglab.outputs import check_output, write_atomic
from scalinglab.runs import Runs

__all__ = ["FIT_FORMAT", "Domain", "Fit", "load_fit"]

FIT_FORMAT = "scalinglab.fit/1"


@dataclass(frozen=True)
class Domain:
    """Ranges of the runs a fit was made on, for extrapolation warnings downstream."""

    params: tuple[float, float]
    tokens: tuple[float, float]
    flops: tuple[float, float]
    tokens_per_param: tuple[float, float]

    @classmethod
    def of(cls, runs: Runs) -> Domain:
        fr = runs.frame

        def span(values: ArrayLike) -> tuple[float, float]:
            v = np.asarray(values, dtype=float)
            return (float(v.min()), float(v.max()))

        return cls(
            params=span(fr["params"]),
            tokens=span(fr["tokens"]),
            flops=span(fr["flops"]),
            tokens_per_param=span(fr["tokens"] / fr["params"]),
        )


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if mapping is None else MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=False)
class Fit:
    """A fitted law: parameters, objective, uncertainty, diagnostics. Immutable.

    ``params`` maps the law's parameter names to fitted values (Chinchilla: ``E``, ``A``, ``B``,
    ``alpha``, ``beta``). ``ci`` holds percentile bootstrap intervals for every parameter and for
    derived quantities (``a`` = β/(α+β) for Chinchilla forms). ``bootstrap_params`` has one row
    per resample, columns in the law's ``param_names`` order.
    """

    law: str
    law_options: Mapping[str, Any]
    params: Mapping[str, float]
    objective: float
    loss: str = "huber"
    huber_delta: float = 1e-3
    n_runs: int = 0
    param_basis: str = "unknown"
    domain: Domain | None = None
    ci: Mapping[str, tuple[float, float]] | None = None
    ci_level: float = 0.95
    bootstrap_params: np.ndarray | None = None
    optima: tuple[Mapping[str, float], ...] = ()
    warnings: tuple[str, ...] = ()
    holdout: Mapping[str, Any] | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    # The verdict: False with reasons when an exponent is implausible or pinned on a bound, or
    # near-optimal solutions disagree (scalinglab.procedures adds extrapolation checks).
    reliable: bool = True
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "law_options", MappingProxyType(dict(self.law_options)))
        set_(self, "params", MappingProxyType({k: float(v) for k, v in self.params.items()}))
        if self.ci is not None:
            ci = {k: (float(a), float(b)) for k, (a, b) in self.ci.items()}
            set_(self, "ci", MappingProxyType(ci))
        if self.bootstrap_params is not None:
            arr = np.array(self.bootstrap_params, dtype=float)
            arr.setflags(write=False)
            set_(self, "bootstrap_params", arr)
        set_(self, "optima", tuple(MappingProxyType(dict(o)) for o in self.optima))
        set_(self, "warnings", tuple(self.warnings))
        set_(self, "holdout", _frozen(self.holdout))
        set_(self, "diagnostics", MappingProxyType(dict(self.diagnostics)))
        set_(self, "reliable", bool(self.reliable))
        set_(self, "reasons", tuple(str(r) for r in self.reasons))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fit) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    # -- the law ---------------------------------------------------------------------------------

    @property
    def law_object(self) -> BaseLaw:
        """The law form, rebuilt from ``law`` and ``law_options``."""
        return get_law(self.law, **self.law_options)

    @property
    def derived(self) -> dict[str, float]:
        """Quantities derived from the parameters (``a`` = β/(α+β) for Chinchilla forms)."""
        return self.law_object.derived(self.params)

    def predict(self, **inputs: ArrayLike) -> float | np.ndarray:
        """Predicted loss, e.g. ``fit.predict(params=7e10, tokens=1.4e12)``.

        Scalars give a float, arrays an array (inputs broadcast together). Any two of ``params``,
        ``tokens``, ``flops`` stand for the third through C = 6·N·D.
        """
        out = self.law_object.predict(self.params, **inputs)
        return float(out) if out.ndim == 0 else out

    def log_predict(self, **inputs: ArrayLike) -> np.ndarray:
        """Log of the predicted loss at ``inputs``, an array of the inputs' broadcast shape."""
        law = self.law_object
        return law.log_predict_at(law.to_raw(self.params), inputs)[0]

    def log_predict_bootstrap(self, **inputs: ArrayLike) -> np.ndarray | None:
        """Log predictions ``[K, *shape]`` of the K bootstrap resamples (None without a bootstrap).

        A resample whose prediction overflows gives inf or NaN there; callers drop it.
        """
        if self.bootstrap_params is None or len(self.bootstrap_params) == 0:
            return None
        law = self.law_object
        return law.log_predict_at(law.raw_array(self.bootstrap_params), inputs)

    def prediction_interval(
        self, level: float = 0.9, **inputs: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the prediction over the bootstrap resamples.

        Raises
        ------
        FitError
            No bootstrap (fit again with ``bootstrap=K``), or ``level`` not in (0, 1).
        """
        if not 0 < level < 1:
            raise FitError(f"level must lie in (0, 1), got {level!r}", field="level")
        logs = self.log_predict_bootstrap(**inputs)
        if logs is None:
            raise FitError(
                "this fit has no bootstrap: fit again with bootstrap=K for intervals",
                field="bootstrap",
            )
        lo, hi = np.percentile(np.exp(logs), [50 * (1 - level), 50 * (1 + level)], axis=0)
        return lo, hi

    # -- display ---------------------------------------------------------------------------------

    def report(
        self,
        *,
        source: str | None = None,
        notes: Sequence[str] | None = None,
        warnings: Sequence[str] = (),
        prediction: Mapping[str, Any] | None = None,
    ) -> str:
        """The fit as readable text: formula, parameter table with CIs, objective, held-out
        errors, prediction, notes and warnings (what ``scalinglab fit`` prints; like lmfit's
        ``fit_report``).

        Parameters
        ----------
        source:
            Where the runs came from (default: the fit's own record of it).
        notes:
            What loading the runs did (default: the fit's own record of it).
        warnings:
            Further warnings to list before the fit's own (e.g. the runs table's).
        prediction:
            A prediction to show: ``{"inputs": {...}, "loss": x}`` and optionally
            ``"interval": [lo, hi]`` and ``"level"``.
        """
        from scalinglab.fitting.display import fit_report

        return fit_report(
            self, source=source, notes=notes, warnings=warnings, prediction=prediction
        )

    def _repr_html_(self) -> str:
        from scalinglab.fitting.display import fit_html

        return fit_html(self)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        flag = "" if self.reliable else ", unreliable"
        return (
            f"<Fit {self.law}: {params}; {self.n_runs} runs, objective {self.objective:.6g}{flag}>"
        )

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self, *, include_bootstrap: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (``include_bootstrap=False`` leaves out the resampled parameters)."""
        d: dict[str, Any] = {
            "format": FIT_FORMAT,
            "law": self.law,
            "law_options": dict(self.law_options),
            "params": dict(self.params),
            "derived": self.derived,
            "objective": self.objective,
            "loss": self.loss,
            "huber_delta": self.huber_delta,
            "n_runs": self.n_runs,
            "param_basis": self.param_basis,
            "domain": None if self.domain is None else _domain_dict(self.domain),
            "ci": None if self.ci is None else {k: list(v) for k, v in self.ci.items()},
            "ci_level": self.ci_level,
            "optima": [dict(o) for o in self.optima],
            "warnings": list(self.warnings),
            "holdout": None if self.holdout is None else _plain(self.holdout),
            "diagnostics": _plain(self.diagnostics),
            "reliable": self.reliable,
            "reasons": list(self.reasons),
        }
        if include_bootstrap:
            d["bootstrap_params"] = (
                None if self.bootstrap_params is None else self.bootstrap_params.tolist()
            )
        return d

    def to_json(self) -> str:
        """The fit as strict JSON (non-finite numbers become null)."""
        return json.dumps(_plain(self.to_dict()), indent=2, allow_nan=False)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically (:func:`scalinglab.outputs.write_atomic`).

        Raises
        ------
        OutputError
            ``path`` is a folder, a store, or cannot be written (``field="out"``).
        """
        check_output(path, field="out")
        write_atomic(path, self.to_json() + "\n", field="out")

    @classmethod
    def from_json(cls, text: str) -> Fit:
        """Read a fit written by :meth:`to_json`."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FitError(
                f"not a fit file: invalid JSON ({exc.msg}, line {exc.lineno})", field="fit"
            ) from None
        if not isinstance(d, dict) or d.get("format") != FIT_FORMAT or "law" not in d:
            raise FitError(
                f"not a fit file: expected a JSON object with format {FIT_FORMAT!r}", field="fit"
            )
        fields = checked_fit_fields(d)
        domain = fields.pop("domain")
        return cls(**fields, domain=None if domain is None else Domain(**domain))

    @classmethod
    def from_params(cls, law: str, params: Mapping[str, float], **fields: Any) -> Fit:
        """A fit from published values, with no data behind it (objective NaN, no CI).

        ``fields`` set any other field, e.g. ``law_options={"x": "flops"}``,
        ``param_basis="total"``.
        """
        options = dict(fields.pop("law_options", {}) or {})
        law_obj = get_law(law, **options)
        law_obj.to_raw(params)  # names present and positive where they must be
        extra = set(params) - set(law_obj.param_names)
        if extra:
            raise LawError(
                f"law {law!r} has no parameters {', '.join(sorted(extra))}; its parameters are "
                f"{', '.join(law_obj.param_names)}"
            )
        fields.setdefault("objective", float("nan"))
        return cls(law=law_obj.name, law_options=law_obj.options, params=dict(params), **fields)


def load_fit(path: str | Path) -> Fit:
    """Read a fit saved by :meth:`Fit.save` (or ``scalinglab fit --out``), every key checked.

    Raises
    ------
    FitError
        ``path`` is not a path, is missing, unreadable, not UTF-8 JSON, or a key has the wrong
        type, shape, range or order; the message names the file and the key (``field="fit"``).
    """
    if not isinstance(path, str | os.PathLike):
        raise FitError(
            f"load_fit: path must be a file path (str or Path), got {type(path).__name__}",
            field="path",
        )
    p = Path(path)
    if not p.is_file():
        raise FitError(f"{p}: no such fit file", field="fit")
    try:
        return Fit.from_json(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FitError(f"{p}: not a fit file (not UTF-8 text)", field="fit") from None
    except OSError as exc:
        raise FitError(f"{p}: cannot read ({exc.strerror or exc})", field="fit") from None
    except ScalingLabError as exc:  # a bad key, or a law name or parameter the law refuses
        raise FitError(f"{p}: {exc}", field="fit") from None


def _domain_dict(domain: Domain) -> dict[str, list[float]]:
    return {
        "params": list(domain.params),
        "tokens": list(domain.tokens),
        "flops": list(domain.flops),
        "tokens_per_param": list(domain.tokens_per_param),
    }


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
