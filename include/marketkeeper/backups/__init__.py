"""Backups of the ledger (pg_dump, or SQLite's backup API for the embedded file), the candle InfluxDB
(influxd backup -portable) and Redis (an RDB), stored through Airflow's object storage, rotated
grandfather-father-son, and proven by restore drills.

One module per idea: :mod:`.destination` (where files go), :mod:`.postgres` and :mod:`.sqlite` (the ledger),
:mod:`.influxdb`, :mod:`.redis` (one per store's server, behind :class:`~.base.StoreBackup`), :mod:`.drill`,
:mod:`.rotation`, :mod:`.config`.
The use cases are :mod:`marketkeeper.services.backups`.
"""

from __future__ import annotations

from marketkeeper.backups.errors import (
    BackupError,
    BackupNotSupportedError,
    ChecksumMismatchError,
    DrillFailedError,
    NoBackupError,
    RestoreRefusedError,
)

__all__ = [
    "BackupError",
    "BackupNotSupportedError",
    "ChecksumMismatchError",
    "DrillFailedError",
    "NoBackupError",
    "RestoreRefusedError",
]
