"""rnnc.autotune_db: versioned tuning records (shipped + local overlay), pure data.

    from rnnc.autotune_db import Database, RecordKey
    db = Database()                       # $RNNC_DB overlay + shipped records
    rec = db.lookup(key)                  # overlay first; stale records skipped with a warning
    db.add([record])                      # atomic, locked append to the overlay

See ``schema`` (key, record, header, staleness), ``store`` (file I/O) and ``db``.
"""

from __future__ import annotations

from .db import OVERLAY, SHIPPED, SHIPPED_DIR, Database, Entry, Scan, best, default_overlay, target_fingerprint
from .schema import SCHEMA_VERSION, Record, RecordError, RecordKey, environment, host_info, stale_reason
from .store import Problem, RecordWarning, append, read_file, rewrite

__all__ = [
    "OVERLAY", "SCHEMA_VERSION", "SHIPPED", "SHIPPED_DIR", "Database", "Entry", "Problem", "Record", "RecordError",
    "RecordKey", "RecordWarning", "Scan", "append", "best", "default_overlay", "environment", "host_info",
    "read_file", "rewrite", "stale_reason", "target_fingerprint",
]
