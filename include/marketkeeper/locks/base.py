"""The :class:`SeriesLock` interface: acquire with a bounded wait, renew in the background, know when it is lost.

A lock is a lease: every successful acquire or renewal confirms it for ``ttl`` seconds, measured on this
process's monotonic clock from *before* the confirming call was sent (so never later than the server's own
expiry). :meth:`SeriesLock.ensure_held` reads that clock itself, so a lock whose renewals fail, or whose
renewer hangs on a dead connection, is reported lost once ``ttl`` has passed, whatever the renewer thread does.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import threading
import time
from types import TracebackType
from typing import ClassVar, Final

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import MarketkeeperError

__all__ = ["DEFAULT_TTL", "SeriesLock", "SeriesLockLostError", "SeriesLockedError", "default_holder"]

log = logging.getLogger("marketkeeper.locks")

#: Seconds a lock stays valid after its last confirmed acquire or renewal (renewed every ``ttl / 3``).
DEFAULT_TTL: Final = 60.0

#: How long :meth:`SeriesLock.release` waits for a renewal in flight (one stuck on a dead connection is left).
_RENEWER_JOIN_TIMEOUT: Final = 2.0


class SeriesLockedError(MarketkeeperError):
    """Another process holds the series' lock.

    :ivar series: the series, ``exchange:symbol:timeframe``.
    :ivar holder: who holds it (host:pid:thread, or an application name), when the backend can tell.
    """

    def __init__(self, series: str, holder: str | None, backend: str, waited: float) -> None:
        who = holder or "an unknown holder"
        waited_text = f" after waiting {waited:.1f}s" if waited > 0 else ""
        super().__init__(f"series {series} is locked by {who} ({backend} lock){waited_text}")
        self.series = series
        self.holder = holder
        self.backend = backend


class SeriesLockLostError(MarketkeeperError):
    """A held lock was lost (it expired and someone else may have it); stop writing the series."""


def default_holder() -> str:
    """``host:pid:thread``, which names the process (and thread) holding a lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


class SeriesLock(abc.ABC):
    """A non-reentrant lock on one series; use it as a context manager.

    Leaving the ``with`` block normally after the lock was lost raises :class:`SeriesLockLostError`, so a
    writer that forgot to call :meth:`ensure_held` before its last write still fails.

    :param key: the series.
    :param ttl: seconds the lock stays valid after its last confirmed renewal.
    :param wait: seconds to keep trying when the lock is held elsewhere before raising.
    :param holder: the name others see while this lock is held (default: :func:`default_holder`).
    """

    backend: ClassVar[str] = "abstract"
    #: Whether the lock lapses ``ttl`` after its last confirmation (a file lock cannot: it lives with the process).
    lease_expires: ClassVar[bool] = True
    #: Renewal errors that are retried until the ttl runs out (anything else stops the renewer: the lock is lost).
    transient_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(
        self, key: SeriesKey | str, *, ttl: float = DEFAULT_TTL, wait: float = 0.0, holder: str | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.series = str(key)
        self.ttl = ttl
        self.wait = wait
        self.holder = holder or default_holder()
        self.held = False
        self.lost = False
        self._confirmed_at: float | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @abc.abstractmethod
    def _try_acquire(self) -> bool: ...

    @abc.abstractmethod
    def _release(self) -> None: ...

    @abc.abstractmethod
    def current_holder(self) -> str | None:
        """Who holds the lock now, when the backend can tell (``None``: free or unknown)."""

    def renew(self) -> bool:
        """Extend a held lock; ``False`` when it was lost. Backends whose locks cannot expire return ``True``."""
        return self.held

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait`` seconds.

        :raises SeriesLockedError: naming the series and its holder.
        """
        if self.held:
            raise RuntimeError(f"lock of {self.series} is already held by this object")
        started = time.monotonic()
        pause = 0.05
        while True:
            attempt = time.monotonic()
            if self._try_acquire():
                break
            waited = time.monotonic() - started
            if waited >= self.wait:
                raise SeriesLockedError(self.series, self.current_holder(), self.backend, waited)
            time.sleep(min(pause, max(self.wait - waited, 0.0)))
            pause = min(pause * 2, 1.0)
        self._confirmed_at = attempt
        self.held = True
        self.lost = False
        self._start_renewal()
        log.debug("locked %s (%s) as %s", self.series, self.backend, self.holder)

    def expired(self) -> bool:
        """Whether ``ttl`` seconds have passed since the lock was last confirmed (read from the clock)."""
        if not self.lease_expires or self._confirmed_at is None:
            return False
        return time.monotonic() - self._confirmed_at >= self.ttl

    def ensure_held(self) -> None:
        """Raise :class:`SeriesLockLostError` if the lock was lost since it was taken (call before a write)."""
        if self.held and not self.lost and self.expired():
            self.lost = True
            log.error("lock of %s lapsed: not renewed for %.1fs (ttl)", self.series, self.ttl)
        if not self.held or self.lost:
            raise SeriesLockLostError(f"lock of series {self.series} ({self.backend}) is no longer held")

    def release(self) -> None:
        """Give the lock up; a no-op when it is not held."""
        self._stop.set()
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.join(_RENEWER_JOIN_TIMEOUT)
        if not self.held:
            return
        self.held = False
        lost = self.lost or self.expired()
        if not lost:
            self._release()
            return
        expected: tuple[type[Exception], ...] = (MarketkeeperError, *self.transient_errors)
        try:
            self._release()
        except expected as exc:
            # The lock is already gone; its loss is what the caller hears about (ensure_held, __exit__).
            log.warning("releasing the lost lock of %s failed: %s", self.series, exc)

    def _start_renewal(self) -> None:
        self._stop = threading.Event()
        interval = self.ttl / 3

        def renew_loop() -> None:
            while not self._stop.wait(interval):
                attempt = time.monotonic()
                try:
                    ok = self.renew()
                except self.transient_errors as exc:
                    # Keep trying until the ttl really runs out; ensure_held reads the clock meanwhile.
                    log.warning("renewing the lock of %s failed: %s", self.series, exc)
                    if self.expired():
                        self._mark_lost("not renewed within its ttl")
                        return
                    continue
                if not ok:
                    self._mark_lost("expired, taken over or its connection died")
                    return
                self._confirmed_at = attempt

        self._renewer = threading.Thread(target=renew_loop, name=f"lock-renew-{self.series}", daemon=True)
        self._renewer.start()

    def _mark_lost(self, why: str) -> None:
        if not self._stop.is_set():
            self.lost = True
            log.error("lock of %s (%s) was lost: %s", self.series, self.backend, why)

    def __enter__(self) -> SeriesLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        lost = self.held and (self.lost or self.expired())
        self.release()
        if lost and exc_type is None:
            raise SeriesLockLostError(
                f"lock of series {self.series} ({self.backend}) was lost while held: another writer may have "
                "written the series meanwhile"
            )
