"""Which logged metric is the loss: kinds of metrics, and the choice by name or glob.

Kinds are read from the metric's name, because that is all a tracker keeps: ``perplexity``
(converted to nats when chosen as the loss), ``accuracy`` (accuracy, F1, exact match and the
like: kept as curves of their own kind, never a loss), ``loss`` (cross-entropy, NLL), ``lr`` and
``other`` (throughput, gradient norms: not imported).
"""

from __future__ import annotations

import fnmatch
import re

from scalinglab.importers.logs import LogImportError

__all__ = ["IMPORTED_KINDS", "choose_loss", "imported_kind", "is_train_metric", "metric_kind"]

# Kinds kept whole in the store; learning rates go with the loss curve, the rest is left.
IMPORTED_KINDS = ("loss", "perplexity", "accuracy")

_PERPLEXITY = re.compile(r"perplexity|(^|[^a-z])ppl([^a-z]|$)")
_ACCURACY_WORDS = {
    "acc",
    "accuracy",
    "f1",
    "em",
    "exact",
    "bleu",
    "rouge",
    "rougel",
    "mmlu",
    "precision",
    "recall",
    "auc",
    "correct",
}
_LOSS = re.compile(r"loss|nll|crossentropy|cross_entropy|xent")
_LR = {"lr", "learning_rate", "learningrate"}
_EVAL_WORDS = {"eval", "val", "valid", "validation", "test", "heldout", "dev"}


def _words(name: str) -> list[str]:
    # camelCase and separators both split words: arc_easy_acc, eval/pile/CrossEntropyLoss.
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9@]+", spaced.lower()) if w]


def metric_kind(name: str) -> str:
    """The kind of a metric from its name.

    Returns
    -------
    str
        ``perplexity``, ``accuracy``, ``loss``, ``lr`` or ``other``.

    Examples
    --------
    >>> metric_kind("eval/pile-validation/CrossEntropyLoss")
    'loss'
    >>> metric_kind("eval/downstream/arc_easy_acc"), metric_kind("eval_ppl")
    ('accuracy', 'perplexity')
    """
    lower = name.lower()
    words = set(_words(name))
    if _PERPLEXITY.search(lower):
        return "perplexity"
    if words & _ACCURACY_WORDS or "pass@" in lower or "exact_match" in lower:
        return "accuracy"
    if _LOSS.search(lower):
        return "loss"
    if words & _LR or lower.replace("/", "_").endswith("learning_rate"):
        return "lr"
    return "other"


def imported_kind(name: str, pattern: str | None) -> str | None:
    """The kind of ``name`` if a reader should keep it (a loss, perplexity or accuracy, a
    learning rate, or any metric ``pattern`` (``--metric``) matches), else ``None``."""
    kind = metric_kind(name)
    if kind in IMPORTED_KINDS or kind == "lr":
        return kind
    if pattern is not None and fnmatch.fnmatchcase(name, pattern):
        return kind
    return None


def _is_eval(name: str) -> bool:
    return bool(set(_words(name)) & _EVAL_WORDS)


def is_train_metric(name: str) -> bool:
    """A training-loss name (``train/loss``, the Trainer's bare ``loss``)."""
    return "train" in _words(name) or name.lower() == "loss"


def choose_loss(run: str, metrics: dict[str, str], pattern: str | None) -> str | None:
    """The metric that is ``run``'s loss.

    Parameters
    ----------
    run
        The run's name (for messages).
    metrics
        Its metrics: name -> kind (:func:`metric_kind`).
    pattern
        ``--metric``: an exact name or a glob (``eval/*/CrossEntropyLoss``); ``None`` picks the
        one evaluation loss (or perplexity) the run logs, else its one loss.

    Returns
    -------
    str or None
        The name, or ``None`` when ``pattern`` matches none of this run's metrics (the caller
        decides whether that is an error: it is when it matches no run at all).

    Raises
    ------
    LogImportError
        The choice is ambiguous, or the chosen metric is an accuracy or a learning rate.
    """
    if pattern is not None:
        found = sorted(m for m in metrics if fnmatch.fnmatchcase(m, pattern))
        if not found:
            return None
        if len(found) > 1:
            raise LogImportError(
                f"--metric {pattern!r} matches {len(found)} metrics of run {run!r} "
                f"({', '.join(found)}); give one name or a narrower glob",
                field="metric",
            )
        chosen = found[0]
        kind = metrics[chosen]
        if kind in ("accuracy", "lr"):
            what = "an accuracy-type metric" if kind == "accuracy" else "a learning rate"
            raise LogImportError(
                f"--metric {chosen!r} is {what}, not a loss: it is imported as a curve of its "
                "own kind; choose a loss (cross-entropy, NLL) or perplexity metric",
                field="metric",
            )
        return chosen
    losses = sorted(m for m, k in metrics.items() if k in ("loss", "perplexity"))
    if not losses:
        return None
    evals = [m for m in losses if _is_eval(m)]
    if len(evals) == 1:
        return evals[0]
    if not evals and len(losses) == 1:
        return losses[0]
    shown = evals or losses
    raise LogImportError(
        f"run {run!r} logs {len(shown)} loss metrics ({', '.join(shown[:6])}"
        f"{', ...' if len(shown) > 6 else ''}); choose one with --metric (a name or a glob)",
        field="metric",
    )
