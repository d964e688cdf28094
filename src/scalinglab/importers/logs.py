"""What every reader returns: the logged series of one source, and the source's identity.

A *series* is one metric of one run (or one segment of a resumed job) as the tool logged it:
optimizer steps (or tokens, when the tool logs them) and values. A *source* is one file or
folder the user named, with the SHA-256 of its bytes, so that importing it twice is noticed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalinglab.errors import ScalingLabError

__all__ = ["LogImportError", "Series", "SourceLog", "hash_files", "source_log"]


class LogImportError(ScalingLabError):
    """Logs that cannot be imported: unreadable, empty, ambiguous, or missing metadata.

    ``field`` names the option, metadata key or column concerned (``metric``, ``params``,
    ``meta``, a column name), so the CLI can point at the flag to fix.
    """


@dataclass(frozen=True)
class Series:
    """One metric of one run as logged.

    Parameters
    ----------
    run
        The run's name in its tool (a W&B run or group, a TensorBoard folder, an MLflow run
        name, a Trainer output folder, a table's run column).
    metric
        The metric's name as the tool spells it (``eval/pile/CrossEntropyLoss``).
    steps
        Optimizer steps (int64), or ``None`` when the source logs tokens instead.
    values
        The logged values (float64), one per step or token count.
    tokens
        Tokens seen at each point, when the source logs them (then no tokens per step is
        needed).
    """

    run: str
    metric: str
    steps: np.ndarray | None
    values: np.ndarray
    tokens: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.tokens is None:
            raise ValueError(f"series {self.run}/{self.metric}: needs steps or tokens")

    @property
    def x(self) -> np.ndarray:
        """The axis points are ordered and stitched on: steps if logged, else tokens."""
        return self.steps if self.steps is not None else self.tokens  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class SourceLog:
    """Everything read from one source.

    Attributes
    ----------
    path
        The file or folder as given.
    format
        ``wandb-panel``, ``table``, ``tensorboard``, ``mlflow`` or ``hf-trainer``.
    sha256
        Hash of the source's bytes (of every file read, in path order, for a folder).
    series
        Its logged series.
    notes
        Things the reader noticed that the user should know (one line each).
    ignored
        Metrics present but not imported (neither a loss, perplexity nor accuracy).
    """

    path: Path
    format: str
    sha256: str
    series: tuple[Series, ...]
    notes: tuple[str, ...] = ()
    ignored: tuple[str, ...] = field(default=())


def hash_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """SHA-256 over the files' relative names and bytes, read in 1 MiB blocks.

    Parameters
    ----------
    paths
        The files, in a deterministic order.
    root
        Names are hashed relative to it (so a moved folder hashes the same).
    """
    digest = hashlib.sha256()
    for path in paths:
        if root is not None:
            digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def source_log(
    path: Path,
    fmt: str,
    sha256: str,
    series: Iterable[Series],
    ignored: Iterable[str] = (),
    notes: Iterable[str] = (),
) -> SourceLog:
    """A reader's :class:`SourceLog`, or the one error every reader gives for a source that
    holds no loss, perplexity or accuracy (naming the metrics it does hold).

    Raises
    ------
    LogImportError
        ``series`` is empty.
    """
    series, ignored = tuple(series), tuple(sorted(ignored))
    if not series:
        raise LogImportError(
            f"{path}: no loss, perplexity or accuracy in it (metrics seen: "
            f"{', '.join(ignored[:8]) or 'none'}); name the loss with --metric",
            field="metric",
        )
    return SourceLog(path, fmt, sha256, series, tuple(notes), ignored)
