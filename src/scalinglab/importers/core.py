"""``import_runs``: read sources, stitch resumed jobs, attach the user's metadata, choose the
loss, and write the runs with their whole curves into the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scalinglab.importers.logs import LogImportError, Series, SourceLog
from scalinglab.importers.metadata import RunMeta, load_metadata, missing_message
from scalinglab.importers.metrics import choose_loss, is_train_metric, metric_kind
from scalinglab.importers.record import Outcome, PreparedRun, record_runs
from scalinglab.importers.sources import read_source
from scalinglab.importers.stitch import Stitched, compile_pattern, job_of, stitch
from scalinglab.store import DEFAULT_STORE

__all__ = ["ImportResult", "ImportedRun", "import_runs"]

_UNSET: Any = object()
# Bumped when what an import writes for the same input changes, so a re-import is a version.
_IDENTITY_VERSION = 1


@dataclass(frozen=True)
class ImportedRun:
    """One run (or stitched job) as the import saw it."""

    name: str
    run_id: str
    group: str
    status: str
    version: int
    metric: str
    points: int
    tokens: int
    params: int
    loss_nats: float
    segments: tuple[str, ...]
    extra_metrics: tuple[str, ...]
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ImportResult:
    """What an import did.

    Attributes
    ----------
    store
        The store written (or that would be, with ``dry_run``).
    runs
        Every run found with a loss: ``status`` ``imported`` or ``unchanged`` (already there).
    skipped
        Runs not imported and why (no loss metric, ``--metric`` matched none of theirs).
    stitched
        Resumed jobs joined from segments, and the overlaps the later segments replaced.
    notes
        Conversions and other things to know (perplexity to nats, W&B groups and sampling).
    sources
        ``path``, ``format`` and ``sha256`` of each source read.
    """

    store: Path
    runs: tuple[ImportedRun, ...]
    skipped: tuple[tuple[str, str], ...]
    stitched: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]
    sources: tuple[dict[str, str], ...]
    dry_run: bool = False
    points: int = field(default=0)

    @property
    def imported(self) -> tuple[ImportedRun, ...]:
        """The runs written by this import."""
        return tuple(r for r in self.runs if r.status == "imported")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``scalinglab import --json``)."""
        return {
            "store": str(self.store),
            "dry_run": self.dry_run,
            "imported": len(self.imported),
            "points": self.points,
            "runs": [r.to_dict() for r in self.runs],
            "skipped": [{"run": n, "reason": r} for n, r in self.skipped],
            "stitched": list(self.stitched),
            "notes": list(self.notes),
            "sources": list(self.sources),
        }


def _on_tokens(series: Series, tokens_per_step: int | None) -> np.ndarray:
    if series.tokens is not None:
        return series.tokens.astype(np.int64)
    assert series.steps is not None and tokens_per_step is not None
    return series.steps.astype(np.int64) * tokens_per_step


def _lookup(tokens: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (logged at ``at``, sorted) at each of ``tokens``; NaN where not logged."""
    out = np.full(len(tokens), np.nan)
    pos = np.searchsorted(at, tokens)
    hit = pos < len(at)
    hit[hit] &= at[pos[hit]] == tokens[hit]
    out[hit] = values[pos[hit]]
    return out


def _prepare(
    name: str,
    meta: RunMeta,
    chosen: str,
    joined: Mapping[str, Stitched],
    logs: Sequence[SourceLog],
    stitch_pattern: str | None,
    notes: list[str],
) -> PreparedRun:
    kind = metric_kind(chosen)
    loss = joined[chosen].series
    loss_values = loss.values
    if kind == "perplexity":
        if (loss_values <= 0).any():
            raise LogImportError(f"run {name!r}: {chosen} has values ≤ 0, not a perplexity")
        loss_values = np.log(loss_values)
        notes.append(f"{name}: {chosen} is a perplexity: stored as its natural log (nats/token)")
    loss_tokens = _on_tokens(loss, meta.tokens_per_step)
    train = None
    if not is_train_metric(chosen):
        trains = [
            m for m in joined if m != chosen and metric_kind(m) == "loss" and is_train_metric(m)
        ]
        train = trains[0] if len(trains) == 1 else None
    lr_names = [m for m in joined if metric_kind(m) == "lr"]
    tokens = loss_tokens
    if train is not None:
        tokens = np.union1d(loss_tokens, _on_tokens(joined[train].series, meta.tokens_per_step))
    val = _lookup(tokens, loss_tokens, loss_values)
    train_values = None
    if train is not None:
        ts = joined[train].series
        train_values = _lookup(tokens, _on_tokens(ts, meta.tokens_per_step), ts.values)
    lr_values = None
    if len(lr_names) == 1:
        ls = joined[lr_names[0]].series
        lr_values = _lookup(tokens, _on_tokens(ls, meta.tokens_per_step), ls.values)
    extra = tuple(
        (
            m,
            metric_kind(m),
            s.series.steps,
            _on_tokens(s.series, meta.tokens_per_step),
            s.series.values,
        )
        for m, s in sorted(joined.items())
        if m not in (chosen, train) and metric_kind(m) in ("loss", "perplexity", "accuracy")
    )
    segments = tuple(sorted({seg for s in joined.values() for seg in s.segments}))
    runs_in_job = set(segments)
    sources = tuple(
        {"path": str(log.path), "format": log.format, "sha256": log.sha256}
        for log in logs
        if any(s.run in runs_in_job for s in log.series)
    )
    identity_doc = {
        "v": _IDENTITY_VERSION,
        "sources": sorted(s["sha256"] for s in sources),
        "metric": chosen,
        "meta": meta.to_dict(),
        "stitch": stitch_pattern,
        "segments": segments,
    }
    identity = hashlib.sha256(json.dumps(identity_doc, sort_keys=True).encode()).hexdigest()
    key = hashlib.sha256(f"import\0{meta.group}\0{name}\0{identity}".encode()).hexdigest()
    config = {
        "import": {
            "name": name,
            "metric": chosen,
            "metric_kind": kind,
            "train_metric": train,
            "segments": list(segments),
            "sources": list(sources),
        },
        "meta": meta.to_dict(),
    }
    return PreparedRun(
        name=name,
        key=key,
        identity=identity,
        meta=meta,
        metric=chosen,
        metric_kind=kind,
        tokens=tokens,
        loss_nats=val,
        train_loss=train_values,
        lr=lr_values,
        extra=extra,
        sources=sources,
        segments=segments,
        config=config,
    )


def import_runs(
    sources: Sequence[str | Path],
    *,
    store: str | Path = DEFAULT_STORE,
    meta: str | Path | Mapping[str, Any] | None = None,
    metric: str | None = None,
    group: str | None = None,
    stitch_pattern: str | None = _UNSET,
    flags: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportResult:
    """Import training logs (W&B, TensorBoard, MLflow, HF Trainer, long tables) into a store.

    Parameters
    ----------
    sources
        Files and folders: W&B panel or run-history exports, long tables (CSV, TSV, Parquet,
        JSON lines), TensorBoard log folders, MLflow ``mlruns/`` folders, ``trainer_state.json``
        (or a Trainer output folder). They are only read.
    store
        The SQLite store (created if missing).
    meta
        ``META.toml`` or the same structure as a mapping: see :mod:`.metadata`.
    metric
        The loss metric: a name or a glob (``eval/*/CrossEntropyLoss``). Default: each run's one
        evaluation loss (or perplexity), else its one loss.
    group
        The sweep the runs join (default: ``meta``'s ``group``, else ``imported``).
    stitch_pattern
        Regular expression with a ``job`` group (and optional ``segment``) joining resumed
        segments; default W&B's ``<job>-run-NNN``; ``None`` joins nothing.
    flags
        Metadata keys for every run (``params``, ``tokens_per_step``, ``param_basis``, ...),
        above the file's top level and below its ``[runs]`` tables.
    dry_run
        Read, check and report, but write nothing.
    progress
        ``progress(stage, done, total)`` while sources are read and runs prepared and written.

    Returns
    -------
    ImportResult
        What was imported, skipped and stitched, with notes.

    Raises
    ------
    LogImportError
        Unreadable or empty sources, ambiguous or non-loss ``metric``, an unknown column, or
        missing metadata (one line naming runs and keys). Nothing is written then.

    Examples
    --------
    >>> import_runs(["wandb_export.csv"], meta="examples/olmo_import.toml")  # doctest: +SKIP
    """
    flags = dict(flags or {})
    if metric is not None:
        flags["metric"] = metric
    if group is not None:
        flags["group"] = group
    if stitch_pattern is not _UNSET:
        flags["stitch"] = stitch_pattern if stitch_pattern else False
    metadata = load_metadata(meta, flags)
    pattern = compile_pattern(metadata.stitch)
    if not sources:
        raise LogImportError("no source given", field="source")
    # Readers keep any column this names even when its name says no kind.
    reader_metric = metadata.flags.get("metric", metadata.defaults.get("metric"))
    logs: list[SourceLog] = []
    seen: dict[str, Path] = {}
    notes: list[str] = []
    for i, source in enumerate(sources):
        if progress is not None:
            progress("read sources", i, len(sources))
        log = read_source(source, metric=reader_metric, columns=metadata.columns)
        if log.sha256 in seen:
            notes.append(f"{source}: the same bytes as {seen[log.sha256]}; read once")
            continue
        seen[log.sha256] = Path(source)
        logs.append(log)
        notes.extend(log.notes)
    if progress is not None:
        progress("read sources", len(sources), len(sources))

    # job -> metric -> [(segment number, series)]
    jobs: dict[str, dict[str, list[tuple[int | None, Series]]]] = {}
    for log in logs:
        for series in log.series:
            job, number = job_of(series.run, pattern)
            jobs.setdefault(job, {}).setdefault(series.metric, []).append((number, series))
    chosen: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    asked: set[str] = set()
    for job, metrics in jobs.items():
        kinds = {m: metric_kind(m) for m in metrics}
        wanted = metadata.merged(job).get("metric")
        name = choose_loss(job, kinds, wanted)
        if name is not None:
            chosen[job] = name
            continue
        what = ", ".join(f"{m} ({k})" for m, k in sorted(kinds.items()))
        if wanted is not None:
            asked.add(wanted)
            skipped.append((job, f"--metric {wanted!r} matches none of its metrics ({what})"))
        else:
            skipped.append((job, f"no loss or perplexity metric (it logs {what})"))
    if asked and not chosen:
        every = sorted({m for metrics in jobs.values() for m in metrics})
        raise LogImportError(
            f"--metric {' / '.join(sorted(asked))!r}: no such metric (column) in the sources; "
            f"metrics found: {', '.join(every[:10])}{', ...' if len(every) > 10 else ''}",
            field="metric",
        )
    stitched: list[dict[str, Any]] = []
    joined_all: dict[str, dict[str, Stitched]] = {}
    for job in chosen:
        joined_all[job] = {m: stitch(job, segs) for m, segs in jobs[job].items()}
        main = joined_all[job][chosen[job]]
        if len(main.segments) > 1 or main.overlaps:
            stitched.append(
                {
                    "job": job,
                    "segments": list(main.segments),
                    "overlaps": [o.describe() for o in main.overlaps],
                }
            )
    resolved: dict[str, RunMeta] = {}
    missing: dict[str, list[str]] = {}
    for job in chosen:
        has_tokens = joined_all[job][chosen[job]].series.tokens is not None
        got = metadata.resolve(job, has_tokens=has_tokens)
        if isinstance(got, list):
            missing[job] = got
        else:
            resolved[job] = got
    if missing:
        raise LogImportError(missing_message(missing), field=next(iter(missing.values()))[0])
    for pattern_name in metadata.unused(list(jobs)):
        notes.append(f"{metadata.where}: [runs.{pattern_name!r}] matches no run in the sources")
    by_group: dict[str, set[tuple[str, str]]] = {}
    for m in resolved.values():
        by_group.setdefault(m.group, set()).add((m.param_basis, m.flops_method))
    for group_name, ways in by_group.items():
        if len(ways) > 1:
            raise LogImportError(
                f"group {group_name!r}: its runs count N or FLOPs differently ({sorted(ways)}); "
                "one group holds one param_basis and one flops_method",
                field="param_basis",
            )
    prepared = []
    for i, job in enumerate(chosen):
        if progress is not None:
            progress("prepare runs", i, len(chosen))
        prepared.append(
            _prepare(job, resolved[job], chosen[job], joined_all[job], logs, metadata.stitch, notes)
        )
    outcomes: list[Outcome] = record_runs(Path(store), prepared, dry_run=dry_run, progress=progress)
    runs = tuple(
        ImportedRun(
            name=o.run.name,
            run_id=o.run.key[:12],
            group=o.run.meta.group,
            status=o.status,
            version=o.version,
            metric=o.run.metric,
            points=int(np.isfinite(o.run.loss_nats).sum()),
            tokens=int(o.run.tokens[-1]),
            params=o.run.meta.params,
            loss_nats=float(o.run.loss_nats[np.isfinite(o.run.loss_nats)][-1]),
            segments=o.run.segments,
            extra_metrics=tuple(e[0] for e in o.run.extra),
            note=o.note,
        )
        for o in outcomes
    )
    points = sum(
        len(o.run.tokens) + sum(len(e[3]) for e in o.run.extra)
        for o in outcomes
        if o.status == "imported"
    )
    return ImportResult(
        store=Path(store),
        runs=runs,
        skipped=tuple(skipped),
        stitched=tuple(stitched),
        notes=tuple(dict.fromkeys(notes)),  # once each, in order
        sources=tuple({"path": str(g.path), "format": g.format, "sha256": g.sha256} for g in logs),
        dry_run=dry_run,
        points=points,
    )
