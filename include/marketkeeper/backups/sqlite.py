"""The ledger's backup when it is the embedded SQLite file: SQLite's online backup API (Python's
``sqlite3.Connection.backup``), which copies a consistent snapshot while other connections keep working.

The copy goes to a temporary file first; the figures (per-table row count and a sha256 of every row in
primary-key order) are computed on that copy, so they describe exactly the snapshot the backup holds, and the
copy is then streamed to the destination like every other store's backup. A drill restores the file through
the same API into a scratch file (after ``PRAGMA integrity_check``) and computes the same figures there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy.engine import make_url

from marketkeeper.backups.base import Figures, StoreBackup
from marketkeeper.backups.destination import CHUNK, HashingWriter
from marketkeeper.backups.errors import BackupError, BackupNotSupportedError, RestoreRefusedError
from marketkeeper.ledger.engine import sqlite_database_file
from marketkeeper.settings import normalize_database_url

__all__ = ["SQLiteBackup", "sqlite_table_figures"]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_table_figures(conn: sqlite3.Connection) -> Figures:
    """Row count and content sha256 of every table of ``conn``'s main database, the shape
    :func:`marketkeeper.backups.postgres.table_figures` gives for PostgreSQL.

    The digest is over each row's values (``repr`` of the tuple SQLite returns: exact for integers, floats,
    text, blobs and NULL), in primary-key order (every column's order, for a table without one).
    """
    figures: dict[str, dict[str, Any]] = {}
    tables = conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    for (name,) in tables:
        columns = conn.execute("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid", (name,)).fetchall()
        key = [column for column, pk in sorted((c for c in columns if c[1] > 0), key=lambda c: c[1])]
        order = ", ".join(_quote(column) for column in key or [c[0] for c in columns])
        digest, rows = hashlib.sha256(), 0
        # Names come from the file's own catalog, quoted; nothing here is user input.
        for row in conn.execute(f"SELECT * FROM {_quote(name)} ORDER BY {order}"):  # noqa: S608
            digest.update(repr(row).encode())
            digest.update(b"\n")
            rows += 1
        figures[f"main.{name}"] = {"rows": rows, "sha256": digest.hexdigest()}
    return {"tables": figures}


def _check(conn: sqlite3.Connection, what: str) -> None:
    """``PRAGMA integrity_check`` of ``conn``; raises naming its first complaint."""
    said = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
    if said != ["ok"]:
        raise BackupError(f"{what} fails SQLite's integrity check: {'; '.join(said)}")


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """Copy ``source`` into the file ``target`` with the online backup API (one step: one consistent
    snapshot), leaving a self-contained file (rollback journal, no ``-wal`` beside it)."""
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        dest.close()


class SQLiteBackup(StoreBackup):
    """Backs up, restores and drills the embedded SQLite ledger.

    :param url: the ledger's ``sqlite:///path`` URL.
    :param busy_timeout: seconds to wait for another connection's write lock.
    """

    store: ClassVar[str] = "ledger"
    kind: ClassVar[str] = "sqlite-backup"
    suffix: ClassVar[str] = ".sqlite"

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        path = sqlite_database_file(make_url(normalize_database_url(url)))
        if path is None:
            raise BackupNotSupportedError("an in-memory SQLite ledger has no file to back up")
        self.path = path.resolve()
        self.busy_timeout = busy_timeout

    def _open(self, path: Path, *, mode: str) -> sqlite3.Connection:
        # mode=rw/ro never creates a file: a missing ledger or backup is an error, not an empty database.
        try:
            return sqlite3.connect(f"{path.as_uri()}?mode={mode}", uri=True, timeout=self.busy_timeout)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot open the SQLite file {path}: {exc}") from exc

    def versions(self) -> tuple[str, str]:
        if not self.path.is_file():
            raise BackupError(f"the SQLite ledger {self.path} does not exist (run `marketkeeper db upgrade`)")
        return f"Python sqlite3 backup API (SQLite {sqlite3.sqlite_version})", f"SQLite {sqlite3.sqlite_version}"

    def dump(self, sink: HashingWriter) -> Figures:
        with tempfile.TemporaryDirectory(prefix="marketkeeper-sqlite-backup-") as tmp:
            copy = Path(tmp, "ledger.sqlite")
            source = self._open(self.path, mode="rw")
            try:
                _copy(source, copy)
            except sqlite3.Error as exc:
                raise BackupError(f"ledger backup: copying {self.path} failed: {exc}") from exc
            finally:
                source.close()
            with contextlib.closing(self._open(copy, mode="ro")) as conn:
                try:
                    _check(conn, "the ledger's backup copy")
                    figures = sqlite_table_figures(conn)
                except sqlite3.Error as exc:
                    raise BackupError(f"ledger backup: reading the copy's figures failed: {exc}") from exc
            with copy.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    sink.write(chunk)
        return figures

    def _restore(self, local: Path, target: Path) -> None:
        """Check the backup file ``local`` and copy it into ``target`` (created or replaced)."""
        try:
            with contextlib.closing(self._open(local, mode="ro")) as backup:
                _check(backup, f"the backup file {local.name}")
                _copy(backup, target)
        except sqlite3.Error as exc:
            raise BackupError(f"restoring the SQLite backup into {target} failed: {exc}") from exc

    @contextlib.contextmanager
    def scratch(self, local: Path, *, label: str, recorded: Figures) -> Iterator[Figures]:
        with tempfile.TemporaryDirectory(prefix=f"marketkeeper-sqlite-drill-{label}-") as tmp:
            restored = Path(tmp, "restored.sqlite")
            self._restore(local, restored)
            with contextlib.closing(self._open(restored, mode="ro")) as conn:
                yield sqlite_table_figures(conn)

    def restored_ledger_url(self, name: str) -> str:
        return f"sqlite:///{Path(name).expanduser().resolve()}"

    def restore_into(self, local: Path, name: str, *, overwrite: bool) -> str:
        target = Path(name).expanduser().resolve()
        if target.exists() and not overwrite:
            raise RestoreRefusedError(
                f"SQLite file {target} already exists: restore into a new file, or pass --overwrite to replace "
                "its contents"
            )
        if target.exists():
            # Through the backup API into the file itself: SQLite locks it, readers see the old or the new
            # contents, never a mix (a plain file copy under a live connection could corrupt it).
            self._restore(local, target)
            return f"replaced the contents of the SQLite file {target}"
        if not target.parent.is_dir():
            raise BackupError(f"cannot restore into {target}: the folder {target.parent} does not exist")
        # Built under a temporary name, then linked into place: a failed restore leaves no file under the name,
        # and os.link refuses a file that appeared meanwhile instead of replacing it.
        partial = target.with_name(f".partial-{uuid.uuid4().hex}-{target.name}")
        try:
            self._restore(local, partial)
            try:
                os.link(partial, target)
            except FileExistsError as exc:
                raise RestoreRefusedError(f"SQLite file {target} appeared during the restore: not replaced") from exc
        finally:
            partial.unlink(missing_ok=True)
        return f"restored into the new SQLite file {target}"
