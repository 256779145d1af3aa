"""A series lock for the embedded SQLite ledger: an exclusive ``flock`` on a file per series.

Lock files live in ``locks/`` beside the ledger file, are created ``0600`` in a ``0700`` folder, and are never
opened through a symbolic link (``O_NOFOLLOW`` on the folder and on the file), so another local user cannot
plant a link that makes a writer truncate some other file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from pathlib import Path

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.locks.base import DEFAULT_TTL, SeriesLock

__all__ = ["FileSeriesLock"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class FileSeriesLock(SeriesLock):
    """An exclusive ``flock`` on ``series-<digest>.lock`` in ``directory``: the embedded (SQLite) ledger's lock.

    Only processes on this machine see it, which is where an embedded ledger's writers run. The lock dies with
    its process and cannot lapse while the process lives.

    :param directory: the lock folder; created ``0700`` when missing, refused when it is a symbolic link.
    :param private: also refuse a folder that another user owns or that others may enter (for a folder in a
        shared place such as the temp directory).
    """

    backend = "file"
    lease_expires = False

    def __init__(
        self,
        directory: Path | str,
        key: SeriesKey | str,
        *,
        ttl: float = DEFAULT_TTL,
        wait: float = 0.0,
        holder: str | None = None,
        private: bool = False,
    ) -> None:
        super().__init__(key, ttl=ttl, wait=wait, holder=holder)
        self.directory = Path(directory)
        self.private = private
        digest = hashlib.sha256(self.series.encode()).hexdigest()[:32]
        self.path = self.directory / f"series-{digest}.lock"
        self._fd: int | None = None

    def _open_directory(self, *, create: bool) -> int:
        if create:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)
        try:
            fd = os.open(self.directory, _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ConfigurationError(
                    f"lock folder {self.directory} is a symbolic link or not a folder: refusing to use it"
                ) from exc
            raise
        if self.private:
            info = os.fstat(fd)
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                os.close(fd)
                raise ConfigurationError(
                    f"lock folder {self.directory} must belong to this user with mode 0700 "
                    f"(owner uid {info.st_uid}, mode {stat.filemode(info.st_mode)})"
                )
        return fd

    def _open_file(self, flags: int) -> int:
        dir_fd = self._open_directory(create=bool(flags & os.O_CREAT))
        try:
            fd = os.open(self.path.name, flags | _FILE_FLAGS, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigurationError(f"lock file {self.path} is a symbolic link: refusing to follow it") from exc
            raise
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigurationError(f"lock file {self.path} is not a regular file: refusing to use it")
        return fd

    def _try_acquire(self) -> bool:
        fd = self._open_file(os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.holder}\n{self.series}\n".encode(), 0)
        self._fd = fd
        return True

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # the lock goes with the descriptor even if truncating fails
                os.ftruncate(fd, 0)
            os.close(fd)

    def current_holder(self) -> str | None:
        try:
            fd = self._open_file(os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        finally:
            os.close(fd)
        return text.splitlines()[0] if text.strip() else None
