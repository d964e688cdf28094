"""Checking a fit read back from JSON (a fit.json may be hand-edited or damaged).

Every key :class:`~scalinglab.fitting.result.Fit` uses is checked as a whole before a Fit is
built: types, shapes (two-number ranges, bootstrap rows as wide as the parameter list),
ranges (finite, positive where the law needs it) and order (low <= high). Each failure is one
:class:`FitError` naming the key; :func:`scalinglab.fitting.load_fit` adds the file's name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from scalinglab.fitting.errors import FitError
from scalinglab.laws import get_law

__all__ = ["checked_fit_fields"]

_DOMAIN_KEYS = ("params", "tokens", "flops", "tokens_per_param")


def _bad(key: str, message: str) -> FitError:
    return FitError(f"{key}: {message}", field="fit")


def _number(key: str, value: Any, *, allow_null: bool = False, positive: bool = False) -> float:
    if value is None and allow_null:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(key, f"must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise _bad(key, f"must be finite, got {value!r}")
    if positive and number <= 0:
        raise _bad(key, f"must be > 0, got {value!r}")
    return number


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(key, f"must be a JSON object, got {type(value).__name__} {value!r:.60}")
    return value


def _range(key: str, value: Any, *, positive: bool) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _bad(key, f"must be a [low, high] pair, got {value!r:.60}")
    low, high = (_number(key, v, positive=positive) for v in value)
    if low > high:
        raise _bad(key, f"low {low:g} is above high {high:g}")
    return low, high


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(key, f"must be a list of strings, got {value!r:.60}")
    return tuple(value)


def checked_fit_fields(d: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``Fit(...)`` from a parsed fit.json, every key checked.

    Raises
    ------
    FitError
        A key of the wrong type, shape, range or order; the message starts with the key.
    """
    law_name = d["law"]
    if not isinstance(law_name, str):
        raise _bad("law", f"must be a law name, got {law_name!r}")
    options = dict(_mapping("law_options", d.get("law_options") or {}))
    law = get_law(law_name, **options)
    params_in = _mapping("params", d.get("params"))
    names = list(law.param_names)
    if sorted(params_in) != sorted(names):
        raise _bad(
            "params",
            f"law {law_name!r} has parameters {', '.join(names)}, "
            f"the file has {', '.join(map(str, params_in)) or 'none'}",
        )
    params = {k: _number(f"params.{k}", params_in[k]) for k in names}
    law.to_raw(params)  # positive where the law needs it
    domain = d.get("domain")
    if domain is not None:
        domain = _mapping("domain", domain)
        missing = [k for k in _DOMAIN_KEYS if k not in domain]
        if missing:
            raise _bad("domain", f"missing {', '.join(missing)}")
        domain = {k: _range(f"domain.{k}", domain[k], positive=True) for k in _DOMAIN_KEYS}
    ci = d.get("ci")
    if ci is not None:
        ci = {
            k: tuple(_number(f"ci.{k}", v, allow_null=True) for v in _pair(f"ci.{k}", pair))
            for k, pair in _mapping("ci", ci).items()
        }
    level = _number("ci_level", d.get("ci_level", 0.95))
    if not 0 < level < 1:
        raise _bad("ci_level", f"must be in (0, 1), got {level!r}")
    boot = d.get("bootstrap_params")
    if boot is not None:
        try:
            boot = np.asarray(boot, dtype=float)
        except (TypeError, ValueError):
            raise _bad("bootstrap_params", "must be rows of numbers") from None
        if boot.ndim != 2 or boot.shape[1] != len(names):
            raise _bad(
                "bootstrap_params",
                f"rows must hold {len(names)} numbers ({', '.join(names)}), "
                f"got shape {list(boot.shape)}",
            )
    n_runs = d.get("n_runs", 0)
    if isinstance(n_runs, bool) or not isinstance(n_runs, int) or n_runs < 0:
        raise _bad("n_runs", f"must be a whole number >= 0, got {n_runs!r}")
    optima = d.get("optima") or []
    if not isinstance(optima, list):
        raise _bad("optima", f"must be a list, got {optima!r:.60}")
    return dict(
        law=law.name,
        law_options=law.options,
        params=params,
        objective=_number("objective", d.get("objective"), allow_null=True),
        loss=_text("loss", d.get("loss", "huber")),
        huber_delta=_number("huber_delta", d.get("huber_delta", 1e-3), positive=True),
        n_runs=n_runs,
        param_basis=_text("param_basis", d.get("param_basis", "unknown")),
        domain=domain,
        ci=ci,
        ci_level=level,
        bootstrap_params=boot,
        optima=tuple(
            {
                k: _number(f"optima.{k}", v, allow_null=True)
                for k, v in _mapping("optima", o).items()
            }
            for o in optima
        ),
        warnings=_strings("warnings", d.get("warnings")),
        holdout=_mapping("holdout", d["holdout"]) if d.get("holdout") is not None else None,
        diagnostics=dict(_mapping("diagnostics", d.get("diagnostics") or {})),
        reliable=bool(d.get("reliable", True)),
        reasons=_strings("reasons", d.get("reasons")),
    )


def _pair(key: str, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _bad(key, f"must be a [low, high] pair, got {value!r:.60}")
    return list(value)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(key, f"must be text, got {value!r:.60}")
    return value
