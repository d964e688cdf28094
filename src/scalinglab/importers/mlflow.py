"""MLflow tracking folders (``mlruns/``), read through MLflow's own client on a ``file:`` URI.

Every run of every active experiment is read; a run is named by its MLflow run name (with
``experiment/`` in front when several experiments are read, and its id's first 8 characters
when two runs share a name). Needs ``mlflow-skinny`` (the client without the server):
``pip install 'scalinglab[mlflow]'``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from scalinglab.importers.logs import LogImportError, Series, SourceLog, hash_files, source_log
from scalinglab.importers.metrics import imported_kind

__all__ = ["is_mlflow_folder", "read_mlflow"]


def is_mlflow_folder(path: Path) -> bool:
    """A folder laid out by MLflow's file store: experiment folders holding a ``meta.yaml``."""
    if not path.is_dir():
        return False
    return (path / ".trash").is_dir() or any(
        (child / "meta.yaml").is_file() and child.name.isdigit() for child in path.iterdir()
    )


@contextmanager
def _file_store_allowed():
    # MLflow 3 keeps the file store in maintenance mode and refuses it unless this variable is
    # set; reading an existing mlruns/ folder is exactly what it is still for.
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old


def read_mlflow(path: Path, metric: str | None = None) -> SourceLog:
    """Read every run's metric histories from an MLflow tracking folder.

    Parameters
    ----------
    path
        The ``mlruns/`` folder.
    metric
        ``--metric``: a metric it matches is read even when its name says no kind.

    Raises
    ------
    LogImportError
        mlflow is missing, the folder lacks ``.trash`` (MLflow's client would create it, and
        sources are never written), or no run logged a loss, perplexity or accuracy.
    """
    try:
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise LogImportError(
            "reading MLflow folders needs mlflow: pip install 'scalinglab[mlflow]'",
            field="source",
        ) from None
    if not (path / ".trash").is_dir():
        raise LogImportError(
            f"{path}: no .trash folder: MLflow's client would create one, and sources are never "
            "written; copy the folder and import the copy"
        )
    # The tracking records only: artifacts (checkpoints, models) can be gigabytes, and are not
    # what is imported.
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and "artifacts" not in p.relative_to(path).parts
    )
    series: list[Series] = []
    ignored: set[str] = set()
    with _file_store_allowed():
        client = MlflowClient(tracking_uri=path.resolve().as_uri())
        experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        runs = []
        for experiment in experiments:
            token = None
            while True:
                page = client.search_runs(
                    [experiment.experiment_id], max_results=1000, page_token=token
                )
                runs.extend((experiment.name, run) for run in page)
                token = page.token
                if not token:
                    break
        names = [run.info.run_name or run.info.run_id for _, run in runs]
        several = len({exp for exp, _ in runs}) > 1
        for (experiment, run), name in zip(runs, names, strict=True):
            if names.count(name) > 1:
                name = f"{name}-{run.info.run_id[:8]}"
            if several:
                name = f"{experiment}/{name}"
            for key in sorted(run.data.metrics):
                if imported_kind(key, metric) is None:
                    ignored.add(key)
                    continue
                history = client.get_metric_history(run.info.run_id, key)
                steps = np.array([m.step for m in history], dtype=np.int64)
                values = np.array([m.value for m in history], dtype=np.float64)
                keep = np.isfinite(values)
                if keep.any():
                    series.append(Series(name, key, steps[keep], values[keep]))
    return source_log(path, "mlflow", hash_files(files, path), series, ignored)
