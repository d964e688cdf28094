""":func:`load_runs`: a raw table becomes a validated :class:`Runs` (columns resolved, values
checked, the third of N, D, C derived, suspicious rows warned about, the top losses dropped)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN, complete_ndc
from scalinglab.runs.columns import (
    ALIASES,
    BASIS_HINTS,
    column_key,
    listing,
    normalise_basis,
    positive_numeric,
    resolve_columns,
    row_label,
    text_values,
    whole_numbers,
)
from scalinglab.runs.sources import read_source
from scalinglab.runs.table import CANONICAL_COLUMNS, Runs, RunsError, RunsWarning

# Beyond this relative gap between C and 6·N·D the user is told: it usually means another FLOP count
# (attention FLOPs, embeddings) or a unit slip (PF-days given as FLOP).
_FLOPS_MISMATCH_RTOL = 0.10


def load_runs(
    source: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    param_basis: str = "unknown",
    drop_top_loss: int = 0,
    curves: bool = False,
    sweep: str | None = None,
) -> Runs:
    """Load and validate a table of training runs.

    Parameters
    ----------
    source:
        A path to a ``.csv``/``.tsv``, ``.parquet``/``.pq``, ``.jsonl``/``.ndjson``, ``.json``
        (records) file, a scalinglab store (``.db``/``.sqlite``/``.sqlite3``), or a DataFrame.
    columns:
        Explicit mapping between canonical names and the source's columns, in either direction:
        ``{"params": "Model Size"}`` or ``{"Model Size": "params"}``. It overrides the aliases.
    param_basis:
        What the parameter count N counts: ``"total"``, ``"non_embedding"`` or ``"unknown"``.
        With ``"unknown"``, a column named ``non_embedding_params``/``total_params`` or a
        ``param_basis`` entry in ``DataFrame.attrs`` decides.
    drop_top_loss:
        Drop the ``K`` highest-loss runs before anything else sees them, by the rule of
        Besiroglu et al. (2024): keep ``loss < sorted(loss)[-K]`` (ties with the K-th highest
        loss are dropped too).
    curves:
        From a store: every checkpoint of its finished runs' training curves, not one final
        point per run (a table is read as it is).
    sweep:
        From a store: only this sweep's runs (an unknown name is refused naming the store's
        sweeps). Refused for a table or a DataFrame, which hold no sweeps.

    Returns
    -------
    Runs
        The validated table.

    Raises
    ------
    RunsError
        Missing columns, non-numeric, NaN/inf or non-positive values (naming row and column),
        an unreadable file, an unknown ``param_basis``, an unknown ``sweep``.

    Warns
    -----
    RunsWarning
        Duplicate rows; C more than 10% away from 6·N·D.
    """
    basis = normalise_basis(param_basis)
    notes: list[str] = []
    frame, source_name = read_source(source, curves=curves, sweep=sweep)
    notes.extend(frame.attrs.get("notes", ()))
    if basis == "unknown" and isinstance(frame.attrs.get("param_basis"), str):
        basis = normalise_basis(frame.attrs["param_basis"])
    if frame.shape[0] == 0:
        raise RunsError(f"{source_name}: the table has no rows", field="source")

    mapping = resolve_columns(frame, columns, notes)
    if basis == "unknown" and "params" in mapping:
        basis = BASIS_HINTS.get(column_key(mapping["params"]), "unknown")

    out: dict[str, pd.Series] = {}
    for canonical in ("params", "tokens", "flops", "loss", "unique_tokens"):
        if canonical in mapping:
            out[canonical] = positive_numeric(frame, mapping[canonical], canonical)

    _derive_third(out, mapping, frame, notes, source_name)
    _check_finite_compute(out)
    if "loss" not in out:
        raise RunsError(
            f"{source_name}: missing column loss (accepted names: "
            f"{', '.join(ALIASES['loss'])}); columns found: {listing(frame.columns)}",
            field="loss",
        )

    if "step" in mapping:
        out["step"] = whole_numbers(frame, mapping["step"])
    for text_column in ("group", "run_id"):
        if text_column in mapping:
            out[text_column] = text_values(frame, mapping[text_column], text_column)

    ordered = [c for c in CANONICAL_COLUMNS if c in out]
    table = pd.DataFrame({c: out[c] for c in ordered})
    used = set(mapping.values())
    for extra in frame.columns:
        if extra not in used and extra not in table.columns:
            table[extra] = frame[extra].to_numpy()
    table = table.reset_index(drop=True)

    _warn_flops_mismatch(table, mapping)
    _warn_duplicates(table)

    if drop_top_loss:
        table = _drop_top_loss(table, drop_top_loss, notes)

    return Runs(frame=table, param_basis=basis, source=source_name, notes=tuple(notes))


def as_runs(runs: Runs | pd.DataFrame | str | Path, *, curves: bool = False) -> Runs:
    """``runs`` as a :class:`Runs`: a Runs is returned as is, a DataFrame or a path is read by
    :func:`load_runs` with its defaults (``curves``: a store's training curves).

    Every function that takes runs accepts all three through this.
    """
    return runs if isinstance(runs, Runs) else load_runs(runs, curves=curves)


def _derive_third(
    out: dict[str, pd.Series],
    mapping: dict[str, str],
    frame: pd.DataFrame,
    notes: list[str],
    source_name: str,
) -> None:
    have = [c for c in ("params", "tokens", "flops") if c in out]
    if len(have) == 3:
        return
    if len(have) < 2:
        lacking = [c for c in ("params", "tokens", "flops") if c not in out]
        hints = "; ".join(f"{c}: {', '.join(ALIASES[c][:4])}" for c in lacking)
        raise RunsError(
            f"{source_name}: missing columns {', '.join(lacking)}: need at least two of params "
            f"(N), tokens (D), flops (C) (accepted names: {hints}); columns found: "
            f"{listing(frame.columns)}",
            field=lacking[0],
        )
    derived = next(c for c in ("params", "tokens", "flops") if c not in out)
    out["params"], out["tokens"], out["flops"] = complete_ndc(
        out.get("params"), out.get("tokens"), out.get("flops")
    )
    notes.append(
        {
            "flops": "flops derived as 6*params*tokens",
            "tokens": "tokens derived as flops/(6*params)",
            "params": "params derived as flops/(6*tokens)",
        }[derived]
    )


def _check_finite_compute(out: dict[str, pd.Series]) -> None:
    """Refuse rows whose N, D or C (given or derived) or 6·N·D overflow or underflow: each
    is finite and positive on its own (checked per column) but the product is not, and an
    infinite value must never reach a fit's domain, a plan or a figure."""
    params, tokens, flops = (out[c].to_numpy(dtype=float) for c in ("params", "tokens", "flops"))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        product = FLOPS_PER_PARAM_TOKEN * params * tokens
        ok = np.isfinite(product) & (product > 0)
        for values in (params, tokens, flops):
            ok &= np.isfinite(values) & (values > 0)
    if ok.all():
        return
    i = int(np.flatnonzero(~ok)[0])
    column = "params" if params[i] >= tokens[i] else "tokens"
    raise RunsError(
        f"{row_label(i)}, column {column}: 6·params·tokens = 6·{params[i]:.3g}·{tokens[i]:.3g} "
        f"is not a finite positive number (C = {flops[i]:.3g}); check the units",
        field=column,
    )


def _warn_flops_mismatch(table: pd.DataFrame, mapping: dict[str, str]) -> None:
    if not all(c in mapping for c in ("params", "tokens", "flops")):
        return
    ratio = table["flops"] / (FLOPS_PER_PARAM_TOKEN * table["params"] * table["tokens"])
    off = np.flatnonzero(np.abs(ratio.to_numpy() - 1.0) > _FLOPS_MISMATCH_RTOL)
    if len(off):
        first = off[0]
        warnings.warn(
            f"{len(off)} of {len(table)} rows have flops more than "
            f"{_FLOPS_MISMATCH_RTOL:.0%} away from 6*params*tokens (first: {row_label(first)}, "
            f"flops/(6ND) = {ratio.iloc[first]:.3g}); check the FLOP count and its units",
            RunsWarning,
            stacklevel=3,
        )


def _warn_duplicates(table: pd.DataFrame) -> None:
    key = [c for c in CANONICAL_COLUMNS if c in table.columns]
    dup = table.duplicated(subset=key, keep="first").to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        listed = ", ".join(str(r + 1) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        warnings.warn(
            f"{len(rows)} duplicate rows (rows {listed}) repeat an earlier row exactly; "
            "they weigh double in a fit",
            RunsWarning,
            stacklevel=3,
        )


def _drop_top_loss(table: pd.DataFrame, k: int, notes: list[str]) -> pd.DataFrame:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise RunsError(
            f"drop_top_loss must be a whole number >= 0, got {k!r}", field="drop_top_loss"
        )
    if k >= len(table):
        raise RunsError(
            f"drop_top_loss={k} would drop all {len(table)} runs", field="drop_top_loss"
        )
    threshold = np.sort(table["loss"].to_numpy())[-k]
    keep = table["loss"].to_numpy() < threshold
    notes.append(
        f"dropped the {int((~keep).sum())} runs with loss >= {threshold:.6g} (drop_top_loss={k})"
    )
    return table.loc[keep].reset_index(drop=True)
