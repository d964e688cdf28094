"""The runs table: one validated, typed table of training runs, whatever their source.

Users bring runs from their own infrastructure (CSV, Parquet, JSONL exports, a pandas DataFrame)
or from a scalinglab sweep store (SQLite). :func:`load_runs` maps their column names onto the
canonical schema, derives the missing one of N, D, C from C = 6·N·D, and refuses bad values with
an error that names the row and the column. Everything downstream (fitting, planning, reports)
reads only the canonical columns.

Canonical columns
-----------------
``params`` (N, parameters), ``tokens`` (D, training tokens), ``flops`` (C, training FLOP),
``loss`` (loss in nats); optional ``group`` (recipe or data set, str), ``step`` (int),
``unique_tokens`` (float, for data-constrained laws) and ``run_id`` (str: rows that share a
``run_id`` are checkpoints of one training run and are resampled together by the bootstrap).

Rows are numbered from 1 in source order, header excluded, in every message.
"""

from __future__ import annotations

import html
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scalinglab.counting import FLOPS_PER_PARAM_TOKEN, complete_ndc
from scalinglab.errors import ScalingLabError
from scalinglab.store import StoreError, load_store_runs

__all__ = [
    "ALIASES",
    "CANONICAL_COLUMNS",
    "Runs",
    "RunsError",
    "RunsWarning",
    "as_runs",
    "load_runs",
]

# Beyond this relative gap between C and 6·N·D the user is told: it usually means another FLOP count
# (attention FLOPs, embeddings) or a unit slip (PF-days given as FLOP).
_FLOPS_MISMATCH_RTOL = 0.10

NUMERIC_COLUMNS = ("params", "tokens", "flops", "loss")
OPTIONAL_COLUMNS = ("group", "step", "unique_tokens", "run_id")
CANONICAL_COLUMNS = NUMERIC_COLUMNS + OPTIONAL_COLUMNS
PARAM_BASES = ("total", "non_embedding", "unknown")


def _key(name: str) -> str:
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
_BASIS_HINTS = {_key("non_embedding_params"): "non_embedding", _key("total_params"): "total"}


class RunsError(ScalingLabError):
    """A runs table cannot be used; the message names the row and the column at fault.

    ``field`` is the canonical column at fault (``"loss"``, ``"params"``, ...), or the argument
    of :func:`load_runs` (``"source"``, ``"columns"``, ``"param_basis"``, ``"drop_top_loss"``).
    """


class RunsWarning(UserWarning):
    """Something in a runs table is suspicious but usable (duplicates, C far from 6·N·D)."""


@dataclass(frozen=True)
class Runs:
    """A validated table of training runs.

    Attributes
    ----------
    frame:
        Columns ``params``, ``tokens``, ``flops``, ``loss`` (float64, finite, > 0), then whichever
        of ``group`` (str), ``step`` (int64), ``unique_tokens`` (float64 > 0), ``run_id`` (str)
        the source had, then the source's other columns unchanged. Index 0..n-1 in source order.
    param_basis:
        What N counts: ``"total"``, ``"non_embedding"`` or ``"unknown"``. The two counts differ
        most at small scale, the main cause of the Kaplan/Chinchilla gap (Pearce & Song 2024).
    source:
        The path read, or ``"<DataFrame>"``.
    notes:
        What loading did to the data (column mapping, derived columns, dropped rows).
    """

    frame: pd.DataFrame
    param_basis: str
    source: str
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.frame)

    def _repr_html_(self) -> str:
        """The table for notebooks: a heading (runs, source, N basis, ranges) over the first
        and last rows of the canonical columns, then the loading notes."""
        columns = [c for c in CANONICAL_COLUMNS if c in self.frame]
        ranges = ", ".join(
            f"{name} {self.frame[name].min():.3g}–{self.frame[name].max():.3g}"
            for name in ("params", "tokens", "flops", "loss")
        )
        heading = (
            f"<strong>{len(self)} runs</strong> from {html.escape(self.source)} "
            f"(N counts {html.escape(self.param_basis)} parameters; {ranges})"
        )
        table = self.frame[columns].to_html(max_rows=10, float_format="{:.4g}".format, border=0)
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        return f"<div>{heading}{table}" + (f"<ul>{notes}</ul>" if notes else "") + "</div>"

    def column(self, name: str) -> np.ndarray:
        """Return canonical column ``name`` as a read-only numpy array."""
        values = self.frame[name].to_numpy()
        values = values.copy()
        values.setflags(write=False)
        return values

    def subset(self, mask: np.ndarray | pd.Series, note: str | None = None) -> Runs:
        """Return the runs where ``mask`` is true, re-indexed, with an optional extra note."""
        frame = self.frame.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        notes = (*self.notes, note) if note else self.notes
        return Runs(frame=frame, param_basis=self.param_basis, source=self.source, notes=notes)

    def cluster_ids(self, by: str = "run") -> np.ndarray:
        """Integer cluster of every row for resampling: whole runs (``run_id``) or whole groups.

        Rows without a ``run_id`` column are each their own run.
        """
        if by == "run":
            if "run_id" not in self.frame:
                return np.arange(len(self.frame))
            return pd.factorize(self.frame["run_id"])[0]
        if by == "group":
            if "group" not in self.frame:
                raise RunsError(
                    "cannot resample by group: the runs table has no 'group' column", field="group"
                )
            return pd.factorize(self.frame["group"])[0]
        raise RunsError(f"cluster 'by' must be 'run' or 'group', got {by!r}", field="by")


def load_runs(
    source: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    param_basis: str = "unknown",
    drop_top_loss: int = 0,
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

    Returns
    -------
    Runs
        The validated table.

    Raises
    ------
    RunsError
        Missing columns, non-numeric, NaN/inf or non-positive values (naming row and column),
        an unreadable file, an unknown ``param_basis``.

    Warns
    -----
    RunsWarning
        Duplicate rows; C more than 10% away from 6·N·D.
    """
    basis = _normalise_basis(param_basis)
    notes: list[str] = []
    frame, source_name = _read(source)
    if basis == "unknown" and isinstance(frame.attrs.get("param_basis"), str):
        basis = _normalise_basis(frame.attrs["param_basis"])
    if frame.shape[0] == 0:
        raise RunsError(f"{source_name}: the table has no rows", field="source")

    mapping = _resolve_columns(frame, columns, notes)
    if basis == "unknown" and "params" in mapping:
        basis = _BASIS_HINTS.get(_key(mapping["params"]), "unknown")

    out: dict[str, pd.Series] = {}
    for canonical in ("params", "tokens", "flops", "loss", "unique_tokens"):
        if canonical in mapping:
            out[canonical] = _positive_numeric(frame, mapping[canonical], canonical)

    _derive_third(out, mapping, frame, notes, source_name)
    _check_finite_compute(out)
    if "loss" not in out:
        raise RunsError(
            f"{source_name}: missing column loss (accepted names: "
            f"{', '.join(ALIASES['loss'])}); columns found: {_listing(frame.columns)}",
            field="loss",
        )

    if "step" in mapping:
        out["step"] = _integer(frame, mapping["step"])
    for text_column in ("group", "run_id"):
        if text_column in mapping:
            out[text_column] = _text(frame, mapping[text_column], text_column)

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


def as_runs(runs: Runs | pd.DataFrame | str | Path) -> Runs:
    """``runs`` as a :class:`Runs`: a Runs is returned as is, a DataFrame or a path is read by
    :func:`load_runs` with its defaults.

    Every function that takes runs accepts all three through this.
    """
    return runs if isinstance(runs, Runs) else load_runs(runs)


# ---------------------------------------------------------------------------------------------
# reading


def _read(source: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "<DataFrame>"
    if isinstance(source, Runs):
        return source.frame.copy(), source.source
    if not isinstance(source, str | os.PathLike):
        raise RunsError(
            "source must be a file path, a DataFrame or Runs, got "
            f"{type(source).__name__} {source!r:.40}",
            field="source",
        )
    path = Path(source)
    name = str(path)
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix in {".db", ".sqlite", ".sqlite3"}:
        if not path.exists():
            raise RunsError(f"{name}: no such store", field="source")
        return _read_store(path), name
    if not path.exists():
        raise RunsError(f"{name}: no such file", field="source")
    try:
        if suffix in {".csv", ".txt"}:
            frame = pd.read_csv(path)
        elif suffix == ".tsv":
            frame = pd.read_csv(path, sep="\t")
        elif suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        elif suffix in {".jsonl", ".ndjson"}:
            frame = pd.read_json(path, lines=True)
        elif suffix == ".json":
            frame = pd.read_json(path, orient="records")
        else:
            raise RunsError(
                f"{name}: unknown file type {suffix or '(none)'!r}; use .csv, .tsv, .parquet, "
                ".jsonl, .json, or a .db/.sqlite store",
                field="source",
            )
    except RunsError:
        raise
    except Exception as exc:  # pandas raises many types; the user needs the file and the reason
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunsError(f"{name}: cannot read as {suffix[1:]}: {reason}", field="source") from exc
    return frame, name


def _read_store(path: Path) -> pd.DataFrame:
    try:
        frame = load_store_runs(path)
    except StoreError as exc:
        message = str(exc)
        raise RunsError(
            message if str(path) in message else f"{path}: {message}", field="source"
        ) from exc
    return frame.reset_index(drop=True)


def _normalise_basis(value: str) -> str:
    key = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    key = {"nonembedding": "non_embedding", "non_emb": "non_embedding"}.get(key, key)
    if key not in PARAM_BASES:
        raise RunsError(
            f"param_basis must be one of {', '.join(PARAM_BASES)}; got {value!r}",
            field="param_basis",
        )
    return key


def _listing(names) -> str:
    return ", ".join(repr(str(n)) for n in names) or "(none)"


def _resolve_columns(
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
                f"columns found: {_listing(frame.columns)}",
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
        by_key.setdefault(_key(column), []).append(column)
    taken = set(mapping.values())
    for canonical, aliases in ALIASES.items():
        if canonical in mapping:
            continue
        found = [c for alias in aliases for c in by_key.get(_key(alias), []) if c not in taken]
        if not found:
            continue
        mapping[canonical] = found[0]
        taken.add(found[0])
        if str(found[0]) != canonical:
            others = [str(c) for c in found[1:]]
            also = f" (also found {', '.join(others)})" if others else ""
            notes.append(f"column {str(found[0])!r} read as {canonical}{also}")
    return mapping


def _row_label(position: int) -> str:
    return f"row {position + 1}"


def _positive_numeric(frame: pd.DataFrame, column: str, canonical: str) -> pd.Series:
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
            f"{_row_label(rows[0])}, {label}: {raw.iloc[rows[0]]!r} is not a number" + _more(rows),
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
                f"{_row_label(rows[0])}, {label}: value {what}{shown}" + _more(rows),
                field=canonical,
            )
    return pd.Series(arr, dtype="float64")


def _to_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _integer(frame: pd.DataFrame, column: str) -> pd.Series:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    arr = values.to_numpy(dtype="float64")
    bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr < 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise RunsError(
            f"{_row_label(rows[0])}, column {str(column)!r} (step): {raw.iloc[rows[0]]!r} is not "
            "a whole number >= 0" + _more(rows),
            field="step",
        )
    return pd.Series(arr.astype("int64"))


def _text(frame: pd.DataFrame, column: str, canonical: str) -> pd.Series:
    raw = frame[column]
    if raw.isna().any():
        rows = np.flatnonzero(raw.isna().to_numpy())
        raise RunsError(
            f"{_row_label(rows[0])}, column {str(column)!r} ({canonical}): value is missing"
            + _more(rows),
            field=canonical,
        )
    return pd.Series(raw.astype(str).to_numpy(), dtype="object")


def _more(rows: np.ndarray) -> str:
    return f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""


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
            f"{_listing(frame.columns)}",
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
        f"{_row_label(i)}, column {column}: 6·params·tokens = 6·{params[i]:.3g}·{tokens[i]:.3g} "
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
            f"{_FLOPS_MISMATCH_RTOL:.0%} away from 6*params*tokens (first: {_row_label(first)}, "
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
