"""The store: one SQLite file per project that keeps every planned and finished run.

- :mod:`.schema`: the tables, the schema version, opening a file, :class:`StoreError`;
- :mod:`.records`: what the store reads of a sweep and its runs (protocols);
- :mod:`.database`: :class:`Store` (writing from the sweep driver, reading for status and
  reports) and :func:`load_store_runs`;
- :mod:`.points`: finished points as the fit engine reads them;
- :mod:`.checkpoints`: the stable-phase checkpoints kept by WSD runs.
"""

from scalinglab.store.checkpoints import KeptCheckpoint, stable_dir
from scalinglab.store.database import Store, load_store_runs
from scalinglab.store.records import BranchRecord, RunRecord, SweepRecord
from scalinglab.store.schema import (
    APPLICATION_ID,
    DEFAULT_STORE,
    SCHEMA_VERSION,
    STATUSES,
    STORE_SUFFIXES,
    StoreError,
)

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_STORE",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_SUFFIXES",
    "BranchRecord",
    "KeptCheckpoint",
    "RunRecord",
    "Store",
    "StoreError",
    "SweepRecord",
    "load_store_runs",
    "stable_dir",
]
