"""One interface per store's backup: take one (bytes to a sink, with the figures the store held), restore one
into a scratch target and read the same figures there, restore one for real. One implementation per store:
:mod:`.postgres`, :mod:`.sqlite`, :mod:`.influxdb`, :mod:`.redis`."""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

from marketkeeper.backups.destination import HashingWriter

__all__ = ["Figures", "StoreBackup", "first_difference"]

#: What a store held, recorded at backup time and read again from a drill's restored copy. JSON-able.
Figures = dict[str, Any]


class StoreBackup(abc.ABC):
    """The backup tool of one store (its server already configured)."""

    #: The store's name in the catalog, the CLI and the DAGs (``ledger``, ``influxdb``, ``redis``).
    store: ClassVar[str]
    #: How the backup is made (``pg_dump-custom`` ...), in the catalog's ``kind``.
    kind: ClassVar[str]
    #: The stored file's name ending.
    suffix: ClassVar[str]

    @abc.abstractmethod
    def versions(self) -> tuple[str, str]:
        """The tool's and the server's version, for the catalog.

        :raises BackupNotSupportedError: this server cannot be backed up this way.
        :raises BackupError: the tool is missing or does not fit the server.
        """

    @abc.abstractmethod
    def dump(self, sink: HashingWriter) -> Figures:
        """Write one backup to ``sink``; the figures of what it holds (taken consistently with it).

        :raises BackupError: the tool failed or was killed.
        """

    @abc.abstractmethod
    def scratch(self, local: Path, *, label: str, recorded: Figures) -> AbstractContextManager[Figures]:
        """Restore the backup file ``local`` into a new scratch target named after ``label`` and yield the
        figures read from it (read the way ``recorded``, the backup-time figures, were); the scratch target
        is dropped when the block ends, whatever happens."""

    @abc.abstractmethod
    def restore_into(self, local: Path, name: str, *, overwrite: bool) -> str:
        """Restore ``local`` for real into ``name``; a sentence saying where it went.

        :raises RestoreRefusedError: ``name`` exists and ``overwrite`` is false.
        """

    def restored_ledger_url(self, name: str) -> str | None:
        """The ledger URL of what :meth:`restore_into` made of ``name``, for a ledger's tool (``None``: not a
        ledger), so the restored copy's own backup row can be settled."""
        return None


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """The first place where ``actual`` differs from ``expected`` (nested dicts compared key by key, in
    sorted order), as ``where: got X, backup time had Y``; ``None`` when they are equal."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual), key=str):
            where = f"{path} {key}".strip()
            if key not in actual:
                return f"{where}: missing from the restored copy"
            if key not in expected:
                return f"{where}: in the restored copy, not at backup time"
            found = first_difference(expected[key], actual[key], where)
            if found is not None:
                return found
        return None
    if expected != actual:
        return f"{path or 'value'}: restored {actual!r}, backup time had {expected!r}"
    return None
