"""What a backup, a restore or a drill raises: each names the store and the cause, never a password."""

from __future__ import annotations

from marketkeeper.errors import MarketkeeperError


class BackupError(MarketkeeperError):
    """A backup, verification, restore or drill failed; the message names the store and the first cause."""


class BackupNotSupportedError(BackupError):
    """The store's server cannot be backed up this way (InfluxDB 2.x/3.x, an in-memory SQLite ledger): never a
    silent success."""


class NoBackupError(BackupError):
    """A store has no complete backup yet (nothing to drill): a drill skips it, naming how to make one."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.hint = f"run `marketkeeper backup run --store {store}`"
        super().__init__(f"{store} has no complete backup to drill yet: {self.hint}")


class ChecksumMismatchError(BackupError):
    """A stored backup's bytes no longer hash to the sha256 recorded when it was written."""


class RestoreRefusedError(BackupError):
    """A restore would overwrite an existing database, server or file without ``--overwrite``."""


class DrillFailedError(BackupError):
    """A restore drill's copy differs from the figures recorded at backup time (or could not be restored)."""

    def __init__(self, store: str, backup_id: int, difference: str) -> None:
        super().__init__(f"restore drill of {store} backup {backup_id} failed: {difference}")
        self.store = store
        self.backup_id = backup_id
        self.difference = difference
