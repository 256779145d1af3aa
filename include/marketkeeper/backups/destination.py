"""Where backups go: a folder or bucket behind Airflow's :class:`~airflow.sdk.ObjectStoragePath`, so ``file://``
(the default, ``MARKETKEEPER_HOME/backups``), ``s3://``, ``gs://`` ... (through an Airflow connection) work alike.

A backup is streamed under a temporary name (``.partial-...``), hashed (sha256) and counted as it is written,
and renamed to its final name only once complete; any failure on the way deletes the temporary object, so a
final name always holds a whole, checksummed backup. Reading one back re-hashes every byte.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from marketkeeper.backups.errors import BackupError, ChecksumMismatchError
from marketkeeper.errors import ConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = ["CHUNK", "Destination", "HashingWriter", "StoredFile"]

T = TypeVar("T")

#: Bytes per read and write while streaming a backup (large enough that hashing and copying stay cheap).
CHUNK = 1 << 20
_PARTIAL = ".partial-"


@dataclass(frozen=True)
class StoredFile:
    """A backup under its final name: where, how many bytes, their sha256."""

    location: str
    size: int
    sha256: str


class HashingWriter:
    """A binary sink that hashes and counts what passes through it on its way to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self._target.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._target.flush()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class Destination:
    """The backup folder or bucket.

    :param url: ``file:///path``, a plain path, ``s3://bucket/prefix`` ...
    :param conn_id: the Airflow connection with the object store's credentials (``None`` for ``file://``).
    """

    def __init__(self, url: str, *, conn_id: str | None = None) -> None:
        self.url = url
        self.conn_id = conn_id
        self.root = self._path(url)

    def _path(self, location: str) -> ObjectStoragePath:
        # Airflow's object storage costs ~2 s to import: only commands that touch backups pay it.
        from airflow.sdk import ObjectStoragePath

        if "://" not in location:
            location = Path(location).expanduser().resolve().as_uri()
        try:
            return ObjectStoragePath(location, conn_id=self.conn_id)
        except ValueError as exc:  # an unknown scheme: its provider (amazon[s3fs], google...) is not installed
            raise ConfigurationError(f"backup destination {location!r} cannot be used: {exc}") from exc

    def path(self, location: str) -> ObjectStoragePath:
        """The object at ``location`` (a location this destination wrote)."""
        return self._path(location)

    def write(self, store: str, name: str, produce: Callable[[HashingWriter], T]) -> tuple[StoredFile, T]:
        """Stream a backup into ``store/name``: ``produce`` writes its bytes to the sink it is given.

        :returns: the stored file and what ``produce`` returned.
        :raises BackupError: the destination failed (no space, a write refused); nothing is left under a
            final name, and the temporary object is removed.
        """
        folder = self.root / store
        final = folder / name
        partial = folder / f"{_PARTIAL}{uuid.uuid4().hex}-{name}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if final.exists():
                raise BackupError(f"backup destination already holds {final}; refusing to overwrite it")
            with partial.open("wb") as handle:
                sink = HashingWriter(handle)
                result = produce(sink)
                sink.flush()
            stored_size = partial.stat().st_size
            if stored_size != sink.size:
                raise BackupError(f"backup destination kept {stored_size} of {sink.size} bytes of {final}")
            self._sync(partial)
            partial.rename(final)
            self._sync(folder)
        except BaseException as exc:
            self._discard(partial)
            if isinstance(exc, OSError):
                raise BackupError(f"writing the backup to {final} failed: {exc}") from exc
            raise
        return StoredFile(location=str(final), size=sink.size, sha256=sink.sha256), result

    @staticmethod
    def _sync(path: ObjectStoragePath) -> None:
        """On a local disk, flush ``path`` (a file, or the folder after the rename) to stable storage, as
        ``pg_dump -f`` does: a backup reported complete survives a power cut. Object stores commit on close."""
        if path.protocol not in ("file", "local"):
            return
        fd = os.open(path.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _discard(partial: ObjectStoragePath) -> None:
        try:
            if partial.exists():
                partial.unlink()
        except OSError:  # the destination is failing already; the original error is what matters
            pass

    def discard_partials(self, store: str, name: str) -> list[str]:
        """Remove the temporary objects a :meth:`write` of ``store/name`` left behind (its process was killed
        before it could); the locations removed.

        :raises BackupError: one cannot be listed or removed.
        """
        folder = self.root / store
        removed: list[str] = []
        try:
            if not folder.exists():
                return removed
            # Names are ours ("<store>-<time>-<id><suffix>"): no glob metacharacters.
            for partial in folder.glob(f"{_PARTIAL}*-{name}"):
                try:
                    partial.unlink()
                except FileNotFoundError:  # another settlement removed it first
                    continue
                removed.append(str(partial))
        except OSError as exc:
            raise BackupError(f"removing the partial backup {name} from {folder} failed: {exc}") from exc
        return removed

    def chunks(self, location: str) -> Iterator[bytes]:
        """The stored bytes of ``location``, a chunk at a time.

        :raises BackupError: it cannot be read (gone, unreachable).
        """
        try:
            with self.path(location).open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
        except OSError as exc:
            raise BackupError(f"reading the backup {location} failed: {exc}") from exc

    def sha256(self, location: str) -> tuple[str, int]:
        """The sha256 and size of what ``location`` holds now."""
        digest, size = hashlib.sha256(), 0
        for chunk in self.chunks(location):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size

    def fetch(self, location: str, local: Path, *, expected_sha256: str) -> Path:
        """Copy ``location`` to the local file ``local``, checking every byte against ``expected_sha256``.

        :raises ChecksumMismatchError: the stored bytes differ from those written (``local`` is removed).
        """
        digest = hashlib.sha256()
        with local.open("wb") as out:
            for chunk in self.chunks(location):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            local.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"backup {location} is corrupt: sha256 {digest.hexdigest()} != {expected_sha256} recorded"
            )
        return local

    def delete(self, location: str) -> None:
        """Remove a stored backup (rotation); one already gone is not an error."""
        target = self.path(location)
        try:
            if target.exists():
                target.unlink()
        except OSError as exc:
            raise BackupError(f"deleting the backup {location} failed: {exc}") from exc
