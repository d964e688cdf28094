"""The value checks of a sweep spec: each returns the clean value or raises a
:class:`~scalinglab.sweep.spec_values.SpecError` whose ``field`` is the dotted key."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from scalinglab.sweep.spec_values import SpecError

__all__ = [
    "MAX_LIST",
    "as_boolean",
    "as_bytes",
    "as_choice",
    "as_integer",
    "as_number",
    "as_number_list",
    "as_string",
    "as_table",
    "check_keys",
    "is_number",
    "key_error",
]

# A list in a spec is capped before it is used: snapping a shape for each of 100,000 sizes
# runs for minutes, and no machine this targets trains that many runs.
MAX_LIST = 1_000


def key_error(key: str, message: str) -> SpecError:
    return SpecError(f"{key}: {message}", field=key)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_number(key: str, value: Any, *, minimum: float | None = 0.0, strict: bool = True) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise key_error(key, f"must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else "≥"
        raise key_error(key, f"must be {relation} {minimum:g}, got {value!r}")
    return float(value)


def as_integer(key: str, value: Any, *, minimum: int = 1) -> int:
    # TOML writes large counts as floats (1e7); accept them when they are whole numbers.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise key_error(key, f"must be a whole number ≥ {minimum}, got {value!r}")
    if value < minimum:
        raise key_error(key, f"must be a whole number ≥ {minimum}, got {value!r}")
    return value


def as_choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise key_error(key, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def as_string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise key_error(key, f"must be a non-empty string, got {value!r}")
    return value


def as_boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise key_error(key, f"must be true or false, got {value!r}")
    return value


def as_number_list(key: str, value: Any, *, integer: bool = False) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise key_error(key, f"must be a non-empty list of positive numbers, got {value!r:.80}")
    if len(value) > MAX_LIST:
        raise key_error(key, f"at most {MAX_LIST:,} values, got {len(value):,}")
    out = []
    for i, item in enumerate(value):
        item_key = f"{key}[{i}]"
        out.append(as_integer(item_key, item) if integer else as_number(item_key, item))
    if len(set(out)) != len(out):
        raise key_error(key, f"has repeated values: {value!r:.120}")
    return tuple(sorted(out))


def as_table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise key_error(key, f"must be a table ([{key}]), got {type(value).__name__}")
    return value


def check_keys(table: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in given:
        if name not in allowed:
            near = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            where = f"{table}.{name}" if table else name
            raise key_error(where, f"unknown key{hint}; allowed: {', '.join(allowed)}")


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTE_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def as_bytes(key: str, value: Any) -> int:
    """A byte count: a number, or a string with a unit ("512MiB", "8 GB")."""
    if isinstance(value, str):
        number, unit = value.strip(), ""
        while number and number[-1].isalpha():
            number, unit = number[:-1], number[-1] + unit
        try:
            value = float(number) * _BYTE_UNITS[unit.lower()]
        except (ValueError, KeyError):
            example = '4e9, "512MiB" or "8GiB"'
            raise key_error(key, f"must be a byte count like {example}, got {value!r}") from None
    return int(as_number(key, value))
