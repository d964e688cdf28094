"""Import training logs from other tools into the store, whole curves included.

Readers, one module per format: :mod:`.wandb` (W&B panel CSV exports), :mod:`.tables` (W&B
run-history exports and long tables: CSV, TSV, Parquet, JSON lines), :mod:`.tensorboard`
(event folders; the ``tensorboard`` extra), :mod:`.mlflow` (``mlruns/`` folders; the ``mlflow``
extra) and :mod:`.hf_trainer` (``trainer_state.json``). :mod:`.metadata` holds what the logs do
not say (given by the user, never guessed), :mod:`.stitch` joins resumed segments, and
:mod:`.record` writes the runs into the tables a sweep writes, so every command that reads a
store reads imported runs unchanged.
"""

from scalinglab.importers.core import ImportedRun, ImportResult, import_runs
from scalinglab.importers.logs import LogImportError, Series, SourceLog
from scalinglab.importers.metadata import Metadata, RunMeta, load_metadata
from scalinglab.importers.metrics import metric_kind
from scalinglab.importers.sources import read_source

__all__ = [
    "ImportResult",
    "ImportedRun",
    "LogImportError",
    "Metadata",
    "RunMeta",
    "Series",
    "SourceLog",
    "import_runs",
    "load_metadata",
    "metric_kind",
    "read_source",
]
