"""What the logs do not say, given by the user: parameters, tokens per step, how N and FLOPs
are counted, the schedule. Never guessed.

From a small TOML file (``--meta META.toml``) and flags. Top-level keys apply to every run; a
``[runs."NAME"]`` table to the run (or resumed job) of that name, and a glob
(``[runs."OLMo-7B*"]``) to every run it matches. Later wins: top level < flags < globs (in file
order) < the exact name::

    group = "olmo"               # the sweep the runs join in the store
    param_basis = "total"        # or "non_embedding": how params counts N
    flops_method = "6nd"         # or "per_operation" (then flops_per_token)
    stitch = '^(?P<job>.+)-run-(?P<segment>\\d+)$'   # W&B's resumed segments (the default)

    [columns]                    # a long table's run / step / tokens columns
    run = "experiment"

    [runs."OLMo-7B"]
    params = 6_888_095_744
    batch_size = 2160            # sequences per optimizer step ...
    seq_len = 2048               # ... times tokens per sequence (or tokens_per_step)
    schedule = "linear"
    schedule_steps = 477_000     # or schedule_tokens: the schedule's length
    warmup_steps = 5000
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scalinglab.importers.logs import LogImportError
from scalinglab.importers.stitch import WANDB_SEGMENTS

__all__ = ["Metadata", "RunMeta", "load_metadata", "missing_message"]

_POSITIVE_INT = (
    "params",
    "params_total",
    "params_non_embedding",
    "tokens_per_step",
    "batch_size",
    "seq_len",
    "schedule_steps",
    "schedule_tokens",
)
_INT = ("warmup_steps", "warmup_tokens", "seed")
_CHOICES = {"param_basis": ("total", "non_embedding"), "flops_method": ("6nd", "per_operation")}
_TEXT = ("schedule", "metric", "group")
RUN_KEYS = (*_POSITIVE_INT, *_INT, *_CHOICES, "flops_per_token", *_TEXT)
_TOP_ONLY = ("stitch", "runs", "columns")
_COLUMN_KEYS = ("run", "step", "tokens")
_GLOB = set("*?[")
DEFAULT_GROUP = "imported"


@dataclass(frozen=True)
class RunMeta:
    """The metadata of one run, resolved and checked."""

    group: str
    params: int
    param_basis: str
    params_total: int | None
    params_non_embedding: int | None
    tokens_per_step: int | None
    seq_len: int | None
    flops_method: str
    flops_per_token: float | None
    schedule: str | None
    schedule_tokens: int | None
    warmup_tokens: int | None
    seed: int | None

    def to_dict(self) -> dict[str, Any]:
        """Every field (JSON-ready)."""
        return asdict(self)


def _check(key: str, value: Any, where: str) -> Any:
    if key not in RUN_KEYS:
        raise LogImportError(
            f"{where}: unknown key {key!r}; known keys: {', '.join(RUN_KEYS)}", field=key
        )
    if key in _POSITIVE_INT or key in _INT:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise LogImportError(f"{where}: {key} must be a whole number, got {value!r}", field=key)
        if key in _POSITIVE_INT and value <= 0:
            raise LogImportError(f"{where}: {key} must be > 0, got {value!r}", field=key)
        if value < 0:
            raise LogImportError(f"{where}: {key} must be ≥ 0, got {value!r}", field=key)
        return int(value)
    if key in _CHOICES and value not in _CHOICES[key]:
        raise LogImportError(
            f"{where}: {key} must be one of {', '.join(_CHOICES[key])}, got {value!r}", field=key
        )
    if key == "flops_per_token":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise LogImportError(f"{where}: flops_per_token must be > 0, got {value!r}", field=key)
        return float(value)
    if key in _TEXT and (not isinstance(value, str) or not value):
        raise LogImportError(f"{where}: {key} must be a non-empty string", field=key)
    return value


@dataclass(frozen=True)
class Metadata:
    """The user's metadata, by scope (see the module docstring)."""

    defaults: Mapping[str, Any] = field(default_factory=dict)
    flags: Mapping[str, Any] = field(default_factory=dict)
    runs: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    stitch: str | None = WANDB_SEGMENTS
    columns: Mapping[str, str] = field(default_factory=dict)
    where: str = "metadata"

    def merged(self, name: str) -> dict[str, Any]:
        """Every key that applies to ``name``, later scopes winning."""
        out = {**self.defaults, **self.flags}
        for pattern, values in self.runs:
            if _GLOB & set(pattern) and fnmatch.fnmatchcase(name, pattern):
                out.update(values)
        for pattern, values in self.runs:
            if pattern == name:
                out.update(values)
        return out

    def unused(self, names: list[str]) -> list[str]:
        """``[runs."..."]`` tables that match none of ``names`` (likely a typo)."""
        return [
            p
            for p, _ in self.runs
            if not any(p == n or (_GLOB & set(p) and fnmatch.fnmatchcase(n, p)) for n in names)
        ]

    def resolve(self, name: str, *, has_tokens: bool) -> RunMeta | list[str]:
        """The checked metadata of run ``name``, or the keys it still needs.

        Parameters
        ----------
        name
            The run (or resumed job).
        has_tokens
            Its logs carry tokens, so no tokens per step is needed.
        """
        m = self.merged(name)
        where = f"{self.where} (run {name!r})"
        missing = [k for k in ("params", "param_basis", "flops_method") if k not in m]
        tokens_per_step = m.get("tokens_per_step")
        if "batch_size" in m or "seq_len" in m:
            if "batch_size" in m and "seq_len" in m:
                product = m["batch_size"] * m["seq_len"]
                if tokens_per_step is not None and tokens_per_step != product:
                    raise LogImportError(
                        f"{where}: tokens_per_step {tokens_per_step} ≠ batch_size × seq_len = "
                        f"{product}; give one of them",
                        field="tokens_per_step",
                    )
                tokens_per_step = product
            elif tokens_per_step is None:
                missing.append("seq_len" if "batch_size" in m else "batch_size")
        if (
            tokens_per_step is None
            and not has_tokens
            and not set(missing) & {"seq_len", "batch_size"}
        ):
            missing.append("tokens_per_step (or batch_size and seq_len)")
        if m.get("flops_method") == "per_operation" and "flops_per_token" not in m:
            missing.append("flops_per_token")
        if m.get("schedule") not in (None, "constant") and not (
            "schedule_steps" in m or "schedule_tokens" in m
        ):
            missing.append("schedule_steps (or schedule_tokens)")
        if missing:
            return missing

        def tokens(key: str) -> int | None:
            if f"{key}_tokens" in m:
                return int(m[f"{key}_tokens"])
            if f"{key}_steps" in m:
                if tokens_per_step is None:
                    raise LogImportError(
                        f"{where}: {key}_steps needs tokens_per_step (or give {key}_tokens)",
                        field=f"{key}_steps",
                    )
                return int(m[f"{key}_steps"]) * tokens_per_step
            return None

        basis = m["param_basis"]
        declared = m.get(f"params_{basis}")
        if declared is not None and declared != m["params"]:
            raise LogImportError(
                f"{where}: params {m['params']} ≠ params_{basis} {declared}; with "
                f"param_basis = {basis!r} they are the same number",
                field="params",
            )
        return RunMeta(
            group=m.get("group", DEFAULT_GROUP),
            params=int(m["params"]),
            param_basis=basis,
            params_total=m.get("params_total", m["params"] if basis == "total" else None),
            params_non_embedding=m.get(
                "params_non_embedding", m["params"] if basis == "non_embedding" else None
            ),
            tokens_per_step=tokens_per_step,
            seq_len=m.get("seq_len"),
            flops_method=m["flops_method"],
            flops_per_token=m.get("flops_per_token"),
            schedule=m.get("schedule"),
            schedule_tokens=tokens("schedule"),
            warmup_tokens=tokens("warmup"),
            seed=m.get("seed"),
        )


def load_metadata(
    meta: str | Path | Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Metadata:
    """Read and check the metadata (a TOML file or the same structure as a mapping).

    Parameters
    ----------
    meta
        ``META.toml``'s path, or its content as a mapping, or ``None``.
    flags
        Keys given on the command line (``params``, ``tokens_per_step``, ...; ``stitch`` too).

    Raises
    ------
    LogImportError
        An unreadable file, an unknown key or a bad value (naming the key and the table).
    """
    where = "metadata"
    if meta is None:
        data: dict[str, Any] = {}
    elif isinstance(meta, Mapping):
        data = dict(meta)
    else:
        path = Path(meta)
        where = str(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise LogImportError(f"--meta: no such file {str(path)!r}", field="meta") from None
        except tomllib.TOMLDecodeError as exc:
            raise LogImportError(f"--meta {path}: not valid TOML ({exc})", field="meta") from None
        except UnicodeDecodeError:
            raise LogImportError(
                f"--meta {path}: not a TOML file (not UTF-8 text)", field="meta"
            ) from None
        except OSError as exc:
            raise LogImportError(
                f"--meta {path}: cannot read ({exc.strerror or exc})", field="meta"
            ) from None
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    stitch = flags.pop("stitch", data.get("stitch", WANDB_SEGMENTS))
    if stitch is False:
        stitch = None
    if stitch is not None and not isinstance(stitch, str):
        raise LogImportError(
            f"{where}: stitch must be a regular expression or false", field="stitch"
        )
    columns = data.get("columns", {})
    if not isinstance(columns, Mapping):
        raise LogImportError(f"{where}: [columns] must be a table", field="columns")
    for key, value in columns.items():
        if key not in _COLUMN_KEYS or not isinstance(value, str):
            raise LogImportError(
                f"{where} [columns]: {key!r} must be one of {', '.join(_COLUMN_KEYS)} = 'column'",
                field=key,
            )
    defaults = {k: _check(k, v, where) for k, v in data.items() if k not in _TOP_ONLY}
    runs_table = data.get("runs", {})
    if not isinstance(runs_table, Mapping):
        raise LogImportError(f"{where}: [runs] must hold one table per run name", field="runs")
    runs: list[tuple[str, dict[str, Any]]] = []
    for name, values in runs_table.items():
        if not isinstance(values, Mapping):
            raise LogImportError(f"{where}: runs.{name!r} must be a table", field="runs")
        scope = f"{where} [runs.{name!r}]"
        runs.append((name, {k: _check(k, v, scope) for k, v in values.items()}))
    checked_flags = {k: _check(k, v, "flags") for k, v in flags.items()}
    return Metadata(defaults, checked_flags, tuple(runs), stitch, dict(columns), where)


def missing_message(missing: Mapping[str, list[str]]) -> str:
    """One line naming the runs and the keys they still need, grouped by the keys."""
    by_keys: dict[tuple[str, ...], list[str]] = {}
    for run, keys in missing.items():
        by_keys.setdefault(tuple(keys), []).append(run)
    parts = []
    for keys, runs in by_keys.items():
        shown = ", ".join(runs[:5]) + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
        verb = "needs" if len(runs) == 1 else "need"
        parts.append(f"{shown} {verb} {', '.join(keys)}")
    return (
        "missing metadata (give it in --meta META.toml or as flags; it is never guessed): "
        + "; ".join(parts)
    )
