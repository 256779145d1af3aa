"""The candle store interface every backend implements, its errors, and the frame checks they share.

A store keeps candle series keyed by :class:`~marketkeeper.candles.SeriesKey` and open time. Writes are
upserts: writing the same candles again changes nothing, a candle with new values replaces the old one, and
an optional value (quote volume, trade count) that a write leaves out keeps what the store already has, so
a poorer source never erases what a richer one stored (InfluxDB merges fields that way; the SQL store
copies it with ``COALESCE``).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, ClassVar, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import (
    CLOSE,
    DERIVED_COLUMNS,
    HIGH,
    LOW,
    OPEN,
    OPEN_TIME,
    OPEN_TIME_DTYPE,
    QUOTE_VOLUME,
    TRADE_COUNT,
    VOLUME,
    CandleFrameError,
    SeriesKey,
    normalize_frame,
    open_time_ns,
)
from marketkeeper.closing import Closing
from marketkeeper.errors import MarketkeeperError, series_context
from marketkeeper.stores.csv_text import CSV_HEADER, csv_lines
from marketkeeper.timeframes import TimeframeError, check_range

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

#: The float columns every candle has, in storage order.
VALUE_COLUMNS: tuple[str, ...] = (OPEN, HIGH, LOW, CLOSE, VOLUME)
#: Candles per frame of :meth:`CandleStore.iter_frames` unless told otherwise (about 10 MB of frame).
CHUNK_ROWS: Final = 100_000
#: Candles per frame inside :meth:`CandleStore.read`, which holds them all anyway: fewer, larger pieces.
_READ_CHUNK_ROWS: Final = 1_000_000


class CandleStoreError(MarketkeeperError):
    """A candle store operation failed; the message names the store, the operation, the series and range.

    :ivar store: the store's name, e.g. ``InfluxDB candle store (http://127.0.0.1:8086, database 'x')``.
    :ivar operation: ``write``, ``read``, ``delete_range``...
    :ivar key: the series, when the operation had one.
    :ivar start: the start of the range (inclusive), when the operation had one.
    :ivar end: the end of the range (exclusive), when the operation had one.
    """

    def __init__(
        self,
        cause: str,
        *,
        store: str,
        operation: str,
        key: SeriesKey | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        where = [store, operation, *series_context(key, start, end)]
        super().__init__(f"{' | '.join(where)}: {cause}")
        self.store = store
        self.operation = operation
        self.key = key
        self.start = start
        self.end = end
        self.cause = cause


class CandleStoreUnavailableError(CandleStoreError):
    """The store's server could not be reached; retrying later is the remedy."""


class CandleStoreMissingError(CandleStoreError):
    """The store's database or table does not exist: ``marketkeeper db upgrade`` creates it, a retry cannot."""


@dataclass(frozen=True)
class PreparedCandles:
    """A validated write: the open times and values of one series as numpy arrays, sorted and unique.

    ``quote_volume`` is ``None`` when the frame had no such column; inside it NaN means "absent for this
    candle". ``trade_count`` likewise, with ``trade_count_present`` marking the candles that have one.
    ``derived`` holds the derived tiers' ``source_count``/``expected_count`` columns the frame had, -1 where a
    candle has none (counts are never negative).
    """

    key: SeriesKey
    times_ns: npt.NDArray[np.int64]
    values: dict[str, npt.NDArray[np.float64]]
    quote_volume: npt.NDArray[np.float64] | None
    trade_count: npt.NDArray[np.int64] | None
    trade_count_present: npt.NDArray[np.bool_] | None
    derived: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times_ns)

    @property
    def start(self) -> datetime:
        """The first open time (the frame must not be empty)."""
        return pd.Timestamp(int(self.times_ns[0]), tz="UTC").to_pydatetime()

    @property
    def end(self) -> datetime:
        """Just after the last open time: the written range is ``[start, end)``."""
        return pd.Timestamp(int(self.times_ns[-1]) + 1000, tz="UTC").to_pydatetime()

    @property
    def quote_volume_present(self) -> npt.NDArray[np.bool_] | None:
        return None if self.quote_volume is None else ~np.isnan(self.quote_volume)


def prepare_candles(key: SeriesKey, frame: pd.DataFrame, *, store: str) -> PreparedCandles:
    """Normalize ``frame`` and check it can be stored exactly: the checks every backend shares.

    Judging candles (high >= low, alignment...) is the quality gate's job; these checks only refuse what
    no store can keep faithfully: non-finite prices or volumes, two candles at one open time, open times
    finer than microseconds.

    :param key: the series the candles belong to.
    :param frame: a candle frame (see :func:`~marketkeeper.candles.normalize_frame`).
    :param store: the store's name, for error messages.
    :raises CandleStoreError: naming the offending column or open time.
    """

    def refuse(cause: str) -> CandleStoreError:
        return CandleStoreError(cause, store=store, operation="write", key=key)

    if not isinstance(key, SeriesKey):
        raise TypeError(f"key must be a SeriesKey, got {type(key).__name__}: {key!r}")
    try:
        df = normalize_frame(frame)
    except CandleFrameError as exc:
        raise refuse(str(exc)) from exc
    if df[OPEN_TIME].isna().any():
        raise refuse("open_time has missing values")
    times = open_time_ns(df)
    if len(times) > 1:
        repeated = times[1:] == times[:-1]
        if repeated.any():
            first = pd.Timestamp(int(times[1:][repeated][0]), tz="UTC")
            raise refuse(f"two candles share open_time {first.isoformat()}; deduplicate before writing")
    if (times % 1000 != 0).any():
        raise refuse("open_time has sub-microsecond parts, which the stores cannot all keep")
    values: dict[str, npt.NDArray[np.float64]] = {}
    for name in VALUE_COLUMNS:
        column = df[name].to_numpy(dtype=np.float64)
        if not np.isfinite(column).all():
            raise refuse(f"column {name} has NaN or infinite values; only finite numbers can be stored")
        values[name] = column
    quote_volume = None
    if QUOTE_VOLUME in df.columns:
        quote_volume = df[QUOTE_VOLUME].to_numpy(dtype=np.float64)
        if np.isinf(quote_volume).any():
            raise refuse(f"column {QUOTE_VOLUME} has infinite values")
    trade_count = present = None
    if TRADE_COUNT in df.columns:
        counts = df[TRADE_COUNT].array
        present = ~np.asarray(counts.isna(), dtype=np.bool_)
        trade_count = np.asarray(counts.to_numpy(dtype=np.int64, na_value=0), dtype=np.int64)
    derived: dict[str, npt.NDArray[np.int64]] = {}
    for name in DERIVED_COLUMNS:
        if name in df.columns:
            column = np.asarray(df[name].array.to_numpy(dtype=np.int64, na_value=-1), dtype=np.int64)
            if (column < -1).any() or (df[name].notna().to_numpy() & (column < 0)).any():
                raise refuse(f"column {name} has negative values")
            derived[name] = column
    return PreparedCandles(key, times, values, quote_volume, trade_count, present, derived)


def frame_from_columns(
    times_ns: npt.ArrayLike,
    values: dict[str, npt.ArrayLike],
    *,
    quote_volume: npt.ArrayLike | None = None,
    trade_count: pd.api.extensions.ExtensionArray | list[int | None] | None = None,
    derived: Mapping[str, npt.ArrayLike] | None = None,
) -> pd.DataFrame:
    """Build the canonical frame a read returns: every candle column, open times in UTC, ascending.

    :param times_ns: open times as int64 nanoseconds since the epoch, ascending.
    :param values: the :data:`VALUE_COLUMNS` as float arrays.
    :param quote_volume: floats with NaN where absent, or ``None`` when no candle has one.
    :param trade_count: integers with ``None``/NA where absent, or ``None`` when no candle has one.
    :param derived: ``source_count``/``expected_count`` as integers, -1 or ``None`` where absent; a column left
        out is absent for every candle.
    """
    times = np.asarray(times_ns, dtype=np.int64)
    n = len(times)
    out = pd.DataFrame({OPEN_TIME: pd.Series(pd.DatetimeIndex(times.view("datetime64[ns]"), tz="UTC"))})
    out[OPEN_TIME] = out[OPEN_TIME].astype(OPEN_TIME_DTYPE)
    for name in VALUE_COLUMNS:
        out[name] = np.asarray(values[name], dtype=np.float64)
    out[QUOTE_VOLUME] = np.full(n, np.nan) if quote_volume is None else np.asarray(quote_volume, dtype=np.float64)
    out[TRADE_COUNT] = pd.array([None] * n if trade_count is None else trade_count, dtype="Int64")
    for name in DERIVED_COLUMNS:
        column = (derived or {}).get(name)
        if column is None:
            out[name] = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.bool_))
        elif isinstance(column, np.ndarray) and column.dtype.kind == "i":
            out[name] = pd.arrays.IntegerArray(column.astype(np.int64, copy=False), column == -1)
        else:
            counts = pd.array(column, dtype="Int64")
            counts[counts == -1] = pd.NA
            out[name] = counts
    return out


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

    def read(self, key: SeriesKey, start: datetime, end: datetime) -> pd.DataFrame:
        """The candles of ``key`` with open times in ``[start, end)``, ascending, in one frame.

        :raises CandleStoreError: the store failed (naming the operation ``read``, the series and range).
        """
        frames = list(self.iter_frames(key, start, end, chunk_rows=_READ_CHUNK_ROWS))
        if len(frames) == 1:
            return frames[0]
        if not frames:
            return frame_from_columns(np.empty(0, dtype=np.int64), {name: [] for name in VALUE_COLUMNS})
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
