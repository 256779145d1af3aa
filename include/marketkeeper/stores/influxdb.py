"""The InfluxDB candle store: measurement ``candles``, tags exchange/symbol/timeframe, one point per candle.

Writes format line protocol and post it (:mod:`marketkeeper.stores.influxdb_write`; the small writes of
several series, :meth:`~marketkeeper.stores.base.CandleStore.write_many`, in one request). Reads and deletes
use bound parameters.

The database must exist: :meth:`InfluxDBCandleStore.ensure_database` is the explicit step that creates it,
and an operation on a missing one raises :class:`~marketkeeper.stores.base.CandleStoreMissingError`.

InfluxDB merges the fields of a point written twice, so a rewrite that leaves out ``quote_volume`` or
``trade_count`` keeps the stored value: that is the contract of every candle store (see
:mod:`marketkeeper.stores.base`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Final

from marketkeeper.errors import StoreUnavailableError
from marketkeeper.influxdb import (
    InfluxDBClient,
    InfluxDBDatabaseNotFoundError,
    InfluxDBError,
    Series,
    escape_measurement,
    quote_identifier,
)
from marketkeeper.series import CANDLE_COLUMNS, SeriesKey
from marketkeeper.stores.base import (
    CandleStore,
    CandleStoreError,
    CandleStoreMissingError,
    CandleStoreUnavailableError,
)
from marketkeeper.stores.influxdb_write import CHUNK_ROWS, format_candle_lines, post_candles, post_candles_together
from marketkeeper.stores.influxdb_write import TAG_KEYS as _TAG_KEYS
from marketkeeper.timeframes import to_ns

if TYPE_CHECKING:
    # numpy and pandas are imported by the methods that build frames (stores.influxdb_frames): a CSV export
    # (stores.influxdb_csv) rewrites the server's text and needs neither.
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from marketkeeper.stores.prepared import PreparedCandles

__all__ = ["InfluxDBCandleStore", "format_candle_lines"]

log = logging.getLogger(__name__)

#: The fields a candle read asks for: every candle column but the open time (InfluxDB's time), in frame order.
_FIELDS: Final = CANDLE_COLUMNS[1:]
#: Rows per chunk of a CSV export (about 9 MB of answer).
_CSV_CHUNK: Final = 100_000
#: Open times per chunk of :meth:`InfluxDBCandleStore.open_times`.
_TIMES_CHUNK: Final = 250_000
# InfluxDB's time range: the parser keeps the two extreme int64 values for itself.
_MIN_NS: Final = -(2**63) + 2
_MAX_NS: Final = 2**63 - 2


class InfluxDBCandleStore(CandleStore):
    """Candles in an InfluxDB database through the v1-API :class:`~marketkeeper.influxdb.InfluxDBClient`.

    :param client: the client of the database to use (its ``batch_size`` is the lines per request).
    :param measurement: the measurement holding the candles.
    :param owns_client: close the client in :meth:`close` (:class:`~marketkeeper.store_set.StoreSet` sets it;
        a caller's client is left open).
    """

    backend = "influxdb"

    def __init__(self, client: InfluxDBClient, *, measurement: str = "candles", owns_client: bool = False):
        escape_measurement(measurement)  # refuse an unwritable name now rather than on the first write
        self._client = client
        self._measurement = measurement
        self._from = quote_identifier(measurement)
        self._owns_client = owns_client
        self._series_filter = " AND ".join(f"{quote_identifier(tag)} = ${tag}" for tag in _TAG_KEYS)

    @property
    def client(self) -> InfluxDBClient:
        return self._client

    @property
    def name(self) -> str:
        return f"InfluxDB candle store ({self._client.url}, database {self._client.database!r})"

    _client_errors: ClassVar[tuple[type[Exception], ...]] = (InfluxDBError, StoreUnavailableError, ValueError)
    # InfluxDB sends a chunk once it holds all its rows: chunks of 1M would leave the server and the parser
    # taking turns, chunks of 100k let the server work on the next while this one is parsed.
    _read_chunk_rows: ClassVar[int] = 100_000

    def _classify(self, exc: Exception) -> tuple[type[CandleStoreError], str]:
        if isinstance(exc, InfluxDBDatabaseNotFoundError):
            return CandleStoreMissingError, str(exc)
        # A 5xx after the client's retries is a server that is down or overloaded, like one not answering.
        if isinstance(exc, StoreUnavailableError) or (
            isinstance(exc, InfluxDBError) and exc.status is not None and exc.status >= 500
        ):
            return CandleStoreUnavailableError, str(exc)
        return CandleStoreError, str(exc)

    def ensure_database(self) -> bool:
        """Create the store's database unless it exists (idempotent): the explicit step that
        ``marketkeeper db upgrade`` runs, since writes never create one.

        :returns: ``True`` when the database was created now.
        :raises CandleStoreError: the server refused (e.g. no admin rights) or could not be reached.
        """
        with self._failing("ensure_database"):
            created = self._client.create_database()
        if created:
            log.info("created the database of %s", self.name)
        return created

    def _params(self, key: SeriesKey, **extra: object) -> dict[str, object]:
        return {
            "exchange": key.exchange,
            "symbol": key.symbol,
            "timeframe": str(key.timeframe),
            **extra,
        }

    def _select(self, fields: tuple[str, ...], where: str, tail: str = "") -> str:
        columns = ", ".join(quote_identifier(name) for name in fields)
        # Only identifiers (quoted) and this class's own clauses go into the text; values are $params.
        return f"SELECT {columns} FROM {self._from} WHERE {self._series_filter}{where}{tail}"  # noqa: S608

    # --- writes ---------------------------------------------------------------------------------------

    def _write(self, prepared: PreparedCandles) -> None:
        post_candles(self._client, prepared, measurement=self._measurement)

    def _write_many(self, prepared: Sequence[PreparedCandles]) -> None:
        if len(prepared) < 2 or sum(map(len, prepared)) > CHUNK_ROWS:
            super()._write_many(prepared)
            return
        # Small writes of several series (a derived tier's incremental buckets in every tier): one POST.
        with self._writing(prepared):
            post_candles_together(self._client, prepared, measurement=self._measurement)

    # --- reads ----------------------------------------------------------------------------------------

    def _query(self, q: str, params: dict[str, object]) -> list[Series]:
        return self._client.query(q, params=params, epoch="ns")

    def _chunks(
        self,
        key: SeriesKey,
        fields: tuple[str, ...],
        start: datetime,
        end: datetime,
        rows: int,
        epoch: str | None = "ns",
    ) -> Any:
        # One chunked query, ascending by time (InfluxQL's default order): the server streams it as it reads.
        q = self._select(fields, " AND time >= $start AND time < $end")
        params = self._params(key, start=_to_ns(start), end=_to_ns(end))
        return self._client.query_chunked(q, params=params, chunk_size=rows, epoch=epoch)

    def _frames(self, key: SeriesKey, start: datetime, end: datetime, chunk_rows: int) -> Iterator[pd.DataFrame]:
        from marketkeeper.stores.influxdb_frames import chunk_frame

        with self._failing("read", key, start, end):
            for chunk in self._chunks(key, _FIELDS, start, end, chunk_rows):
                yield chunk_frame(chunk)

    def write_csv(self, key: SeriesKey, start: datetime, end: datetime, out: BinaryIO) -> int:
        """See :meth:`CandleStore.write_csv`. The server's chunked answer is rewritten into the CSV as bytes
        (:mod:`marketkeeper.stores.influxdb_csv`): floats print as InfluxDB's shortest round-trip text (``7``,
        ``1e-7``), each the double stored."""
        from marketkeeper.stores.csv_text import CSV_HEADER
        from marketkeeper.stores.influxdb_csv import csv_rows

        start, end = self._range(start, end)
        columns = ("time", *_FIELDS)
        rows = 0
        with self._failing("read", self._check_key(key), start, end):
            header = CSV_HEADER.encode()  # goes out with the first rows, so a failed query writes nothing
            for chunk in self._chunks(key, _FIELDS, start, end, _CSV_CHUNK, epoch=None):
                lines = csv_rows(chunk, columns)
                rows += lines.count(b"\n")
                out.write(header + lines)
                header = b""
            out.write(header)
        return rows

    def latest(self, key: SeriesKey, n: int = 1) -> pd.DataFrame:
        from marketkeeper.stores.influxdb_frames import series_frame

        self._check_n(n)
        with self._failing("latest", self._check_key(key)):
            result = self._query(self._select(_FIELDS, "", " ORDER BY time DESC LIMIT $n"), self._params(key, n=n))
            frame = series_frame(result)
            return frame.iloc[::-1].reset_index(drop=True)

    def _edge(self, key: SeriesKey, *, first: bool, operation: str) -> datetime | None:
        function = "first" if first else "last"
        with self._failing(operation, self._check_key(key)):
            q = f"SELECT {function}({quote_identifier('open')}) FROM {self._from} WHERE {self._series_filter}"  # noqa: S608
            result = self._query(q, self._params(key))
            if not result or not result[0].values:
                return None
            return _from_ns(int(result[0].values[0][0]))

    def open_times(self, key: SeriesKey, start: datetime, end: datetime) -> npt.NDArray[np.int64]:
        import numpy as np

        from marketkeeper.stores.influxdb_frames import chunk_times

        start, end = self._range(start, end)
        with self._failing("open_times", self._check_key(key), start, end):
            parts = [chunk_times(chunk) for chunk in self._chunks(key, ("open",), start, end, _TIMES_CHUNK)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def count(self, key: SeriesKey, start: datetime, end: datetime) -> int:
        start, end = self._range(start, end)
        with self._failing("count", self._check_key(key), start, end):
            return self._count(key, _to_ns(start), _to_ns(end))

    def _count(self, key: SeriesKey, start_ns: int, end_ns: int) -> int:
        columns = f"count({quote_identifier('open')})"
        q = f"SELECT {columns} FROM {self._from} WHERE {self._series_filter} AND time >= $start AND time < $end"  # noqa: S608
        result = self._query(q, self._params(key, start=start_ns, end=end_ns))
        if not result or not result[0].values:
            return 0
        return int(result[0].values[0][1])

    def list_series(self) -> list[SeriesKey]:
        with self._failing("list_series"):
            group = ", ".join(quote_identifier(tag) for tag in _TAG_KEYS)
            # last() per group reads one point per series; series whose points were all deleted drop out,
            # which SHOW SERIES (an index listing) would not do.
            q = f"SELECT last({quote_identifier('open')}) FROM {self._from} GROUP BY {group}"  # noqa: S608
            result = self._client.query(q, epoch="ns")
        return self._series_keys(
            (f"series with tags {series.tags}", _tags(series)) for series in result if series.values
        )

    def delete_range(self, key: SeriesKey, start: datetime, end: datetime) -> int:
        start, end = self._range(start, end)
        start_ns, end_ns = _to_ns(start), _to_ns(end)
        with self._failing("delete_range", self._check_key(key), start, end):
            existing = self._count(key, start_ns, end_ns)
            if existing == 0:
                return 0
            # DELETE binds parameters like SELECT does, so no name from the input reaches the text.
            q = f"DELETE FROM {self._from} WHERE {self._series_filter} AND time >= $start AND time < $end"  # noqa: S608
            params = self._params(key, start=start_ns, end=end_ns)
            self._client.query(q, params=params, epoch=None)
        return existing

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _tags(series: Series) -> tuple[str, str, str]:
    exchange, symbol, timeframe = (series.tags.get(tag, "") for tag in _TAG_KEYS)
    return exchange, symbol, timeframe


def _to_ns(dt: datetime) -> int:
    # Clamped so "all time" ranges stay inside what InfluxDB's parser accepts.
    return min(max(to_ns(dt), _MIN_NS), _MAX_NS)


def _from_ns(ns: int) -> datetime:
    """An epoch-nanosecond time as an aware UTC datetime (to the microsecond, as ``Timestamp.to_pydatetime``)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
