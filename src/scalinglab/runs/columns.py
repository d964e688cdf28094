"""From a raw table's columns to canonical ones: the accepted spellings, the parameter basis,
and the per-column checks (positive numbers, whole steps, text) naming the row and column at fault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from scalinglab.runs.table import CANONICAL_COLUMNS, PARAM_BASES, RunsError


def column_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


# Accepted spellings, matched case- and punctuation-insensitively ("Model Size" == "model_size").
# Earlier spellings win when a table has several (a table with `loss` and `train_loss` uses `loss`).
ALIASES: Mapping[str, tuple[str, ...]] = {
    "params": (
        "params",
        "N",
        "n_params",
        "num_params",
        "parameters",
        "param_count",
        "Model Size",
        "model_params",
        "non_embedding_params",
        "total_params",
    ),
    "tokens": (
        "tokens",
        "D",
        "n_tokens",
        "num_tokens",
        "Training Tokens",
        "train_tokens",
        "tokens_seen",
        "dataset_size",
    ),
    "flops": (
        "flops",
        "C",
        "FLOP",
        "compute",
        "Training FLOP",
        "training_flops",
        "train_flops",
        "total_flops",
    ),
    "loss": (
        "loss",
        "val_loss",
        "validation_loss",
        "eval_loss",
        "test_loss",
        "final_loss",
        "loss_nats",
        "train_loss",
    ),
    "group": ("group", "recipe", "config", "dataset"),
    "step": ("step", "steps", "global_step", "iteration", "iter"),
    "unique_tokens": ("unique_tokens", "U", "U_D", "unique_data"),
    "run_id": ("run_id", "run", "run_name"),
}
# A column named like this tells which parameter count the table uses.
BASIS_HINTS = {
    column_key("non_embedding_params"): "non_embedding",
    column_key("total_params"): "total",
}


def normalise_basis(value: str) -> str:
    key = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    key = {"nonembedding": "non_embedding", "non_emb": "non_embedding"}.get(key, key)
    if key not in PARAM_BASES:
        raise RunsError(
            f"param_basis must be one of {', '.join(PARAM_BASES)}; got {value!r}",
            field="param_basis",
        )
    return key


def listing(names) -> str:
    return ", ".join(repr(str(n)) for n in names) or "(none)"


def resolve_columns(
    frame: pd.DataFrame, columns: Mapping[str, str] | None, notes: list[str]
) -> dict[str, str]:
    """Return {canonical name: source column}."""
    present = {str(c): c for c in frame.columns}
    mapping: dict[str, str] = {}
    for left, right in (columns or {}).items():
        if left in CANONICAL_COLUMNS and right in present:
            canonical, column = left, right
        elif right in CANONICAL_COLUMNS and left in present:
            canonical, column = right, left
        elif left in CANONICAL_COLUMNS or right in CANONICAL_COLUMNS:
            missing = right if left in CANONICAL_COLUMNS else left
            raise RunsError(
                f"column mapping {left!r}: {right!r}: the table has no column {missing!r}; "
                f"columns found: {listing(frame.columns)}",
                field="columns",
            )
        else:
            raise RunsError(
                f"column mapping {left!r}: {right!r} names no canonical column; "
                f"canonical columns are {', '.join(CANONICAL_COLUMNS)}",
                field="columns",
            )
        mapping[canonical] = present[column]

    by_key: dict[str, list[str]] = {}
    for column in frame.columns:
        by_key.setdefault(column_key(column), []).append(column)
    taken = set(mapping.values())
    for canonical, aliases in ALIASES.items():
        if canonical in mapping:
            continue
        found = [
            c for alias in aliases for c in by_key.get(column_key(alias), []) if c not in taken
        ]
        if not found:
            continue
        mapping[canonical] = found[0]
        taken.add(found[0])
        if str(found[0]) != canonical:
            others = [str(c) for c in found[1:]]
            also = f" (also found {', '.join(others)})" if others else ""
            notes.append(f"column {str(found[0])!r} read as {canonical}{also}")
    return mapping


def row_label(position: int) -> str:
    return f"row {position + 1}"


def positive_numeric(frame: pd.DataFrame, column: str, canonical: str) -> pd.Series:
    raw = frame[column]
    label = f"column {str(column)!r}" + (f" ({canonical})" if str(column) != canonical else "")
    if pd.api.types.is_bool_dtype(raw):
        raise RunsError(f"{label} holds true/false values, not numbers", field=canonical)
    try:
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
    except (TypeError, ValueError):  # object cells pandas cannot vectorise (arrays, lists)
        values = pd.Series([_to_float(v) for v in raw], index=raw.index, dtype="float64")
    bad_text = values.isna() & raw.notna()
    if bad_text.any():
        rows = np.flatnonzero(bad_text.to_numpy())
        raise RunsError(
            f"{row_label(rows[0])}, {label}: {raw.iloc[rows[0]]!r} is not a number"
            + more_rows(rows),
            field=canonical,
        )
    arr = values.to_numpy()
    checks = (
        (np.isnan(arr), "is missing (NaN)"),
        (np.isinf(arr), "is infinite"),
        (arr <= 0, "must be > 0"),
    )
    for mask, what in checks:
        if mask.any():
            rows = np.flatnonzero(mask)
            shown = "" if what.startswith("is missing") else f" (got {arr[rows[0]]!r})"
            raise RunsError(
                f"{row_label(rows[0])}, {label}: value {what}{shown}" + more_rows(rows),
                field=canonical,
            )
    return pd.Series(arr, dtype="float64")


def _to_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def whole_numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    arr = values.to_numpy(dtype="float64")
    bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr < 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise RunsError(
            f"{row_label(rows[0])}, column {str(column)!r} (step): {raw.iloc[rows[0]]!r} is not "
            "a whole number >= 0" + more_rows(rows),
            field="step",
        )
    return pd.Series(arr.astype("int64"))


def text_values(frame: pd.DataFrame, column: str, canonical: str) -> pd.Series:
    raw = frame[column]
    if raw.isna().any():
        rows = np.flatnonzero(raw.isna().to_numpy())
        raise RunsError(
            f"{row_label(rows[0])}, column {str(column)!r} ({canonical}): value is missing"
            + more_rows(rows),
            field=canonical,
        )
    return pd.Series(raw.astype(str).to_numpy(), dtype="object")


def more_rows(rows: np.ndarray) -> str:
    return f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
