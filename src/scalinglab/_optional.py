"""Optional dependencies: which extra installs each, and the one-line error when one is missing.

``pip install scalinglab`` fits, plans and reports; training needs ``scalinglab[train]``
(torch, tokenizers) and the Ray executor ``scalinglab[ray]``. A missing one is reported as a
:class:`MissingDependencyError` whose message says what to install, never as a bare
``No module named 'torch'`` from deep inside the trainer.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from scalinglab.errors import ScalingLabError

__all__ = ["EXTRAS", "MissingDependencyError", "as_missing_dependency", "require"]

# Top-level module -> the extra of pyproject.toml that installs it.
EXTRAS = {"torch": "train", "tokenizers": "train", "ray": "ray"}


class MissingDependencyError(ScalingLabError, ImportError):
    """An optional dependency is not installed; the message says which extra installs it.

    It is also an :class:`ImportError`, so code that guards an optional import with
    ``except ImportError`` keeps working.
    """


def _message(module: str, purpose: str | None) -> str:
    extra = EXTRAS.get(module, "")
    what = f"{purpose} needs" if purpose else "this needs"
    install = f"pip install 'scalinglab[{extra}]'" if extra else f"pip install {module}"
    return f"{what} {module}, which is not installed: {install}"


def as_missing_dependency(
    exc: BaseException, purpose: str | None = None
) -> MissingDependencyError | None:
    """``exc`` as a :class:`MissingDependencyError` if it is a missing optional module, else None.

    Parameters
    ----------
    exc
        Any exception; only an :class:`ImportError` naming a module of :data:`EXTRAS` (or one of
        its submodules) converts.
    purpose
        What needed it (``"scalinglab train"``), for the message.
    """
    if isinstance(exc, MissingDependencyError):
        return exc
    if not isinstance(exc, ImportError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    if top not in EXTRAS:
        return None
    return MissingDependencyError(_message(top, purpose), field=top)


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise a :class:`MissingDependencyError` naming the extra to install.

    Parameters
    ----------
    module
        A module of :data:`EXTRAS` (``"torch"``, ``"ray"``, ...).
    purpose
        What needs it (``"training"``), for the message.

    Returns
    -------
    types.ModuleType
        The imported module.

    Raises
    ------
    MissingDependencyError
        ``module`` cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = as_missing_dependency(exc, purpose)
        if missing is None:  # blocked without a module name: still the same answer
            missing = MissingDependencyError(_message(module, purpose), field=module)
        raise missing from exc
