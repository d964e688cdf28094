"""TensorBoard event folders, read with TensorBoard's own ``EventAccumulator``.

Each folder holding ``events.out.tfevents.*`` files is one run (named by its path below the
folder given, or the folder's own name). Both kinds of scalar summaries are read: the classic
``simple_value`` (``torch.utils.tensorboard``, tensorboardX) and TF2's scalar tensors. Needs the
``tensorboard`` package: ``pip install 'scalinglab[tensorboard]'``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scalinglab.importers.logs import LogImportError, Series, SourceLog, hash_files, source_log
from scalinglab.importers.metrics import imported_kind

__all__ = ["event_files", "read_tensorboard"]

_EVENTS = "events.out.tfevents.*"


def event_files(path: Path) -> list[Path]:
    """Every event file under ``path`` (a folder, or one event file), sorted."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob(_EVENTS) if p.is_file())


def _accumulator():
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise LogImportError(
            "reading TensorBoard logs needs the tensorboard package: "
            "pip install 'scalinglab[tensorboard]'",
            field="source",
        ) from None
    return event_accumulator


def read_tensorboard(path: Path, metric: str | None = None) -> SourceLog:
    """Read the scalars of a TensorBoard log folder (or one event file).

    Parameters
    ----------
    path
        A folder with event files in it or below it, or one ``events.out.tfevents.*`` file.
    metric
        ``--metric``: a tag it matches is read even when its name says no kind.

    Raises
    ------
    LogImportError
        No event files, or no scalars in them.
    """
    files = event_files(path)
    if not files:
        raise LogImportError(f"{path}: no TensorBoard event files (events.out.tfevents.*)")
    if all(f.stat().st_size == 0 for f in files):
        raise LogImportError(f"{path}: empty event files, nothing to import")
    ea = _accumulator()
    root = path if path.is_dir() else path.parent
    # A run is a folder of event files; several files in one folder are one run's restarts,
    # which the accumulator reads in order (a restart's steps replace the earlier ones).
    targets = [path] if path.is_file() else sorted({f.parent for f in files})
    series: list[Series] = []
    ignored: set[str] = set()
    for target in targets:
        rel = target.parent if target.is_file() else target
        run = root.name if rel == root else rel.relative_to(root).as_posix()
        acc = ea.EventAccumulator(str(target), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        tags = acc.Tags()
        logged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for tag in tags.get(ea.SCALARS, []):
            events = acc.Scalars(tag)
            logged[tag] = (
                np.array([e.step for e in events], dtype=np.int64),
                np.array([e.value for e in events], dtype=np.float64),
            )
        for tag in tags.get(ea.TENSORS, []):
            # TF2 writes scalars as rank-0 tensors under the scalars plugin.
            if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
                continue
            from tensorboard.util import tensor_util

            events = acc.Tensors(tag)
            logged[tag] = (
                np.array([e.step for e in events], dtype=np.int64),
                np.array(
                    [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events],
                    dtype=np.float64,
                ),
            )
        for tag, (steps, values) in logged.items():
            if imported_kind(tag, metric) is None:
                ignored.add(tag)
                continue
            keep = np.isfinite(values)
            if keep.any():
                series.append(Series(run, tag, steps[keep], values[keep]))
    return source_log(path, "tensorboard", hash_files(files, root), series, ignored)
