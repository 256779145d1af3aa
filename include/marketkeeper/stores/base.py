"""The candle store interface every backend implements (its errors and the frame checks the backends share
live in :mod:`~marketkeeper.stores.errors` and :mod:`~marketkeeper.stores.prepared`, re-exported here).

A store keeps candle series keyed by :class:`~marketkeeper.candles.SeriesKey` and open time. Writes are
upserts: writing the same candles again changes nothing, a candle with new values replaces the old one, and
an optional value (quote volume, trade count) that a write leaves out keeps what the store already has, so
a poorer source never erases what a richer one stored (InfluxDB merges fields that way; the SQL store
copies it with ``COALESCE``).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Final

from marketkeeper.closing import Closing
from marketkeeper.series import VALUE_COLUMNS, SeriesKey
from marketkeeper.stores.errors import CandleStoreError, CandleStoreMissingError, CandleStoreUnavailableError
from marketkeeper.timeframes import TimeframeError, check_range

if TYPE_CHECKING:
    # numpy and pandas are imported by the methods that build or take frames (and the modules they call):
    # ``marketkeeper candles --format csv`` streams a store's own text and pays for neither.
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from marketkeeper.stores.frames import frame_from_columns
    from marketkeeper.stores.prepared import PreparedCandles, prepare_candles

__all__ = [
    "CHUNK_ROWS",
    "VALUE_COLUMNS",
    "CandleStore",
    "CandleStoreError",
    "CandleStoreMissingError",
    "CandleStoreUnavailableError",
    "PreparedCandles",
    "frame_from_columns",
    "prepare_candles",
]

#: Candles per frame of :meth:`CandleStore.iter_frames` unless told otherwise (about 10 MB of frame).
CHUNK_ROWS: Final = 100_000
#: Candles per frame inside :meth:`CandleStore.read`, which holds them all anyway: fewer, larger pieces.
_READ_CHUNK_ROWS: Final = 1_000_000
#: Names this module re-exports from the modules that import numpy and pandas, loaded when first used.
_LAZY: Final = {
    "PreparedCandles": "marketkeeper.stores.prepared",
    "prepare_candles": "marketkeeper.stores.prepared",
    "frame_from_columns": "marketkeeper.stores.frames",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


class CandleStore(Closing):
    """Candle series keyed by exchange, symbol, timeframe and open time; one implementation per backend.

    Every range is half-open, ``[start, end)``, and every datetime must be timezone-aware (naive ones raise
    :class:`~marketkeeper.timeframes.NaiveDatetimeError`). Frames come back canonical: the columns of
    :data:`~marketkeeper.candles.CANDLE_COLUMNS` (``quote_volume`` NaN and ``trade_count`` NA where a
    candle has none), sorted by ``open_time``, with the values that were written.
    """

    #: Short backend name, e.g. ``influxdb`` or ``postgresql``.
    backend: str

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Which store this is, for messages (never a password or token)."""

    def write(self, key: SeriesKey, frame: pd.DataFrame) -> int:
        """Upsert ``frame``'s candles into series ``key`` and return how many candles were written.

        An empty frame is a no-op returning 0. A failure raises; it never returns 0 to hide one.

        :param key: the series.
        :param frame: a candle frame; open times unique, prices and volumes finite.
        :raises CandleStoreError: the frame cannot be stored or the store failed (nothing or part of the
            frame may be stored then; writing it again completes it without duplicates).
        """
        from marketkeeper.stores.prepared import prepare_candles

        prepared = prepare_candles(self._check_key(key), frame, store=self.name)
        self._check_writable(key)
        if len(prepared) == 0:
            return 0
        with self._failing("write", key, prepared.start, prepared.end):
            self._write(prepared)
        logging.getLogger(type(self).__module__).debug("wrote %d candles of %s to %s", len(prepared), key, self.name)
        return len(prepared)

    @abc.abstractmethod
    def _write(self, prepared: PreparedCandles) -> None:
        """Upsert a validated, non-empty write (inside :meth:`_failing`)."""

    def _check_writable(self, key: SeriesKey) -> None:
        """Refuse a series the backend cannot hold, before anything is written (default: every series)."""

    def write_many(self, items: Sequence[tuple[SeriesKey, pd.DataFrame]]) -> list[int]:
        """:meth:`write` of several series at once: each ``(key, frame)`` upserted into its series, and how many
        candles each wrote, in order. Backends join the writes to save round trips (PostgreSQL: one statement,
        which stores every frame or none, while the rows together are few; InfluxDB: one request while the lines
        fit in one chunk); otherwise the frames are written one after the other.

        Every frame is checked (as :meth:`write` checks it) before anything is written, so one a store cannot
        keep refuses the whole call; a series may appear only once.

        :raises CandleStoreError: a frame cannot be stored, or the store failed: the error names the series
            when there is one, else the series in its cause and the range they span (part of the frames may be
            stored then; writing them again completes them without duplicates).
        """
        from marketkeeper.stores.prepared import prepare_candles

        return self.write_prepared(
            [prepare_candles(self._check_key(key), frame, store=self.name) for key, frame in items]
        )

    def write_prepared(self, prepared: Sequence[PreparedCandles]) -> list[int]:
        """:meth:`write_many` of writes already checked (by :func:`~marketkeeper.stores.prepared.prepare_candles`
        or :func:`~marketkeeper.stores.prepared.prepared_from_arrays`): what a derived tier's buckets take, as
        the arrays they were computed in.

        :raises CandleStoreError: as :meth:`write_many`.
        """
        for one in prepared:
            self._check_key(one.key)
        seen: set[SeriesKey] = set()
        for one in prepared:
            if one.key in seen:
                raise CandleStoreError(
                    "the series appears twice in one write_many; join its frames first",
                    store=self.name,
                    operation="write",
                    key=one.key,
                )
            seen.add(one.key)
            self._check_writable(one.key)
        todo = [one for one in prepared if len(one)]
        if todo:
            self._write_many(todo)
            logging.getLogger(type(self).__module__).debug(
                "wrote %d candles of %d series to %s", sum(map(len, todo)), len(todo), self.name
            )
        return [len(one) for one in prepared]

    def _write_many(self, prepared: Sequence[PreparedCandles]) -> None:
        """Upsert validated, non-empty writes of distinct series (default: :meth:`_write` of each in turn)."""
        for one in prepared:
            with self._failing("write", one.key, one.start, one.end):
                self._write(one)

    @contextmanager
    def _writing(self, prepared: Sequence[PreparedCandles]) -> Iterator[None]:
        """:meth:`_failing` of one joint write of several series: the error names the range they span and
        lists the series in its cause (one series: named as :meth:`write` names it)."""
        start, end = min(one.start for one in prepared), max(one.end for one in prepared)
        if len(prepared) == 1:
            with self._failing("write", prepared[0].key, start, end):
                yield
            return
        try:
            with self._failing("write", None, start, end):
                yield
        except CandleStoreError as exc:
            names = ", ".join(str(one.key) for one in prepared)
            raise type(exc)(
                f"{exc.cause} (writing series {names})", store=exc.store, operation=exc.operation, start=start, end=end
            ) from (exc.__cause__ or exc)

    def read(self, key: SeriesKey, start: datetime, end: datetime) -> pd.DataFrame:
        """The candles of ``key`` with open times in ``[start, end)``, ascending, in one frame.

        :raises CandleStoreError: the store failed (naming the operation ``read``, the series and range).
        """
        frames = list(self.iter_frames(key, start, end, chunk_rows=self._read_chunk_rows))
        if len(frames) == 1:
            return frames[0]
        if not frames:
            from marketkeeper.stores.frames import empty_read

            return empty_read()
        import pandas as pd

        return pd.concat(frames, ignore_index=True)

    def iter_frames(
        self, key: SeriesKey, start: datetime, end: datetime, *, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The candles of ``key`` with open times in ``[start, end)`` as consecutive canonical frames, in
        constant memory: each holds between 1 and ``chunk_rows`` candles, in ascending open time, and the
        frames together are exactly what :meth:`read` returns. An empty range yields no frame.

        The key, range and ``chunk_rows`` are checked when this is called; the store is read as the frames are
        taken, and a failure then raises :class:`CandleStoreError` (operation ``read``) from the iteration.
        Closing the iterator early releases the connection or request.
        """
        start, end = self._range(start, end)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        return self._frames(self._check_key(key), start, end, chunk_rows)

    @abc.abstractmethod
    def _frames(self, key: SeriesKey, start: datetime, end: datetime, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """:meth:`iter_frames` after its arguments were checked: a generator, errors wrapped by :meth:`_failing`."""

    def write_csv(self, key: SeriesKey, start: datetime, end: datetime, out: BinaryIO) -> int:
        """Stream the candles of ``key`` in ``[start, end)`` to ``out`` as UTF-8 CSV; return the rows written.

        :data:`~marketkeeper.stores.csv_text.CSV_HEADER`, then a line per candle in ascending open time (as
        ``isoformat()`` in UTC), an empty field where a value is absent. Every float reads back with ``float()``
        as the very double stored; its text is the backend's (here ``repr``: ``7.0``; PostgreSQL: ``7``).
        """
        from marketkeeper.stores.csv_text import CSV_HEADER, csv_lines

        frames = self.iter_frames(key, start, end)  # checks the arguments before anything is written
        out.write(CSV_HEADER.encode())
        rows = 0
        for frame in frames:
            out.write(csv_lines(frame).encode())
            rows += len(frame)
        return rows

    @abc.abstractmethod
    def latest(self, key: SeriesKey, n: int = 1) -> pd.DataFrame:
        """The newest ``n`` candles of ``key``, ascending (fewer when the series is shorter)."""

    def first_open_time(self, key: SeriesKey) -> datetime | None:
        """The open time of the oldest candle of ``key``; ``None`` only when the series is empty."""
        return self._edge(key, first=True, operation="first_open_time")

    def last_open_time(self, key: SeriesKey) -> datetime | None:
        """The open time of the newest candle of ``key``; ``None`` only when the series is empty."""
        return self._edge(key, first=False, operation="last_open_time")

    @abc.abstractmethod
    def _edge(self, key: SeriesKey, *, first: bool, operation: str) -> datetime | None:
        """The open time of the oldest (``first``) or the newest candle of ``key``; errors name ``operation``."""

    @abc.abstractmethod
    def open_times(self, key: SeriesKey, start: datetime, end: datetime) -> npt.NDArray[np.int64]:
        """The open times in ``[start, end)`` as ascending int64 nanoseconds since the epoch."""

    @abc.abstractmethod
    def count(self, key: SeriesKey, start: datetime, end: datetime) -> int:
        """How many candles of ``key`` open in ``[start, end)``."""

    @abc.abstractmethod
    def list_series(self) -> list[SeriesKey]:
        """Every series holding at least one candle, sorted by exchange, symbol and timeframe."""

    @abc.abstractmethod
    def delete_range(self, key: SeriesKey, start: datetime, end: datetime) -> int:
        """Delete the candles of ``key`` opening in ``[start, end)`` and return how many there were."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the store owns (a client or engine it was built with, not one it was given)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # Helpers for implementations.

    #: The exceptions of the backend's client or driver that :meth:`_failing` turns into store errors.
    _client_errors: ClassVar[tuple[type[Exception], ...]] = ()
    #: Candles per frame inside :meth:`read` (a store that streams its answer as it goes reads smaller ones).
    _read_chunk_rows: ClassVar[int] = _READ_CHUNK_ROWS

    def _classify(self, exc: Exception) -> tuple[type[CandleStoreError], str]:
        """Which store error one of :attr:`_client_errors` becomes, and the cause it states."""
        return CandleStoreError, str(exc)

    @contextmanager
    def _failing(
        self,
        operation: str,
        key: SeriesKey | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Iterator[None]:
        """Turn the backend's errors inside the block into a store error naming this store, the operation,
        the series and the range (the backend's error stays attached as ``__cause__``)."""
        try:
            yield
        except CandleStoreError:
            raise
        except self._client_errors as exc:
            error, cause = self._classify(exc)
            raise error(cause, store=self.name, operation=operation, key=key, start=start, end=end) from exc

    def _series_keys(self, found: Iterable[tuple[str, tuple[str, str, str]]]) -> list[SeriesKey]:
        """:meth:`list_series` from ``(what, (exchange, symbol, timeframe))`` pairs: the keys, sorted; a triple
        that is no series raises a store error that says what it was."""
        keys = []
        for what, parts in found:
            try:
                keys.append(SeriesKey.of(*parts))
            except (TimeframeError, ValueError) as exc:
                raise CandleStoreError(
                    f"{what} is not a candle series: {exc}", store=self.name, operation="list_series"
                ) from exc
        return sorted(keys, key=lambda k: (k.exchange, k.symbol, k.timeframe.value))

    @staticmethod
    def _range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        return check_range(start, end)

    @staticmethod
    def _check_n(n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return n

    @staticmethod
    def _check_key(key: SeriesKey) -> SeriesKey:
        if not isinstance(key, SeriesKey):
            raise TypeError(f"key must be a SeriesKey, got {type(key).__name__}: {key!r}")
        return key
