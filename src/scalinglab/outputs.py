"""The one rule for every file scalinglab writes.

Before any work starts, :func:`check_output` refuses an output path that could not be written
or that would destroy something: a folder, a device or other non-regular file, a folder that
cannot be written (or a file where a folder should be), one of the command's inputs (also
through a link or another spelling), or any SQLite file (a store). Missing folders are created
when the output is written. An existing regular file that is none of these is replaced:
naming it as the output is the user saying so. Then :func:`write_atomic` (or
:func:`atomic_path` for libraries that write by path) writes a temporary file in the same
folder and renames it over the target, so a failed write (a full disk) leaves the old file
as it was and never half a new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from scalinglab.errors import ScalingLabError

__all__ = ["OutputError", "atomic_path", "check_output", "is_sqlite", "write_atomic"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


class OutputError(ScalingLabError):
    """An output path that cannot or must not be written; ``field`` names the option."""


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is a SQLite database (a scalinglab store or any other)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output(
    path: str | Path,
    *,
    field: str,
    inputs: Iterable[str | Path | None] = (),
    folder: bool = False,
) -> Path:
    """Check that ``path`` may be written, before any work: return it as a Path.

    Parameters
    ----------
    path
        The output file (or, with ``folder=True``, an output folder created if missing).
    field
        The option or argument that named it (``"out"``); the error carries it.
    inputs
        The files the command reads (``None`` entries are skipped); the output may be none
        of them, also through a link or another spelling.
    folder
        ``path`` is a folder to write files into.

    Raises
    ------
    OutputError
        A folder given for a file (or a file for a folder), a device or other non-regular
        file, one of ``inputs``, a SQLite file, or a path whose nearest existing folder is
        a file or cannot be written by this process.
    """
    if not isinstance(path, str | os.PathLike):
        raise OutputError(f"expected a file path, got {type(path).__name__}", field=field)
    target = Path(path)
    for given in inputs:
        if given is not None and target.exists() and _same_file(target, Path(given)):
            raise OutputError(
                f"{target} is one of this command's inputs; refusing to overwrite it", field=field
            )
    if folder:
        if target.exists() and not target.is_dir():
            raise OutputError(f"{target} exists and is not a folder", field=field)
        parent = target if target.exists() else target.parent
    else:
        if target.is_dir():
            raise OutputError(f"{target} is a folder; give a file name", field=field)
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):
            raise OutputError(f"{target} is not a regular file", field=field)
        if target.exists() and is_sqlite(target):
            raise OutputError(
                f"{target} is a SQLite database (a store?); refusing to overwrite it", field=field
            )
        parent = target.parent
    parent = parent.absolute()
    while not parent.exists():  # missing folders are made at write time; check the nearest
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: {str(parent)!r} is a file, not a folder", field=field)
    try:  # the only sure test of writability (root, ACLs, read-only mounts) is to write
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".scalinglab-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"{target}: cannot write in {str(parent)!r} ({exc.strerror or exc})", field=field
        ) from None
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, *, field: str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success rename it over ``path``.

    For writers that take a path (``DataFrame.to_parquet``, ``Figure.savefig``). On an error
    the temporary file is removed and ``path`` is left as it was; an :class:`OSError` becomes
    an :class:`OutputError` naming ``field``.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            dir=target.parent,
            prefix=f".{target.stem}.",
            suffix=target.suffix,
        )
        os.close(fd)
        os.chmod(name, 0o666 & ~_umask())  # mkstemp makes it 0600; give the usual mode
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})", field=field) from None
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})", field=field) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def write_atomic(path: str | Path, data: str | bytes, *, field: str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically: all of it, or nothing changed.

    Raises
    ------
    OutputError
        The write failed (no space, no permission); ``path`` is unchanged.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, field=field) as temporary:
        temporary.write_bytes(payload)
