"""The InfluxDB candle store: measurement ``candles``, tags exchange/symbol/timeframe, one point per candle.

Writes format line protocol a chunk at a time and post the chunk from a small thread pool while the next
one is formatted. The tags are the same on every line, so they are escaped once by
:mod:`marketkeeper.influxdb.lineprotocol` and passed to a ``str.format`` template as an *argument*: the
template itself holds only the store's constant field keys, never a name from the input (a symbol such as
``A{x}`` would otherwise be read as a placeholder). Reads and deletes use bound parameters.

The database must exist: :meth:`InfluxDBCandleStore.ensure_database` is the explicit step that creates it,
and an operation on a missing one raises :class:`~marketkeeper.stores.base.CandleStoreMissingError`.

InfluxDB merges the fields of a point written twice, so a rewrite that leaves out ``quote_volume`` or
``trade_count`` keeps the stored value: that is the contract of every candle store (see
:mod:`marketkeeper.stores.base`).
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from itertools import repeat
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import DERIVED_COLUMNS, QUOTE_VOLUME, TRADE_COUNT, SeriesKey
from marketkeeper.errors import StoreUnavailableError
from marketkeeper.influxdb import (
    InfluxDBClient,
    InfluxDBDatabaseNotFoundError,
    InfluxDBError,
    Series,
    escape_field_key,
    escape_measurement,
    escape_tag,
    quote_identifier,
)
from marketkeeper.influxdb.chunked import Chunk
from marketkeeper.stores.base import (
    VALUE_COLUMNS,
    CandleStore,
    CandleStoreError,
    CandleStoreMissingError,
    CandleStoreUnavailableError,
    PreparedCandles,
    frame_from_columns,
)
from marketkeeper.timeframes import to_ns

__all__ = ["InfluxDBCandleStore", "format_candle_lines"]

log = logging.getLogger(__name__)

_TAG_KEYS: Final = ("exchange", "symbol", "timeframe")
_FIELDS: Final = (*VALUE_COLUMNS, QUOTE_VOLUME, TRADE_COUNT, *DERIVED_COLUMNS)
#: Rows formatted per chunk: big enough that per-chunk overhead vanishes, small enough to overlap.
CHUNK_ROWS: Final = 50_000
#: Chunks in flight at once: one being posted while the next is formatted (and one spare).
_WRITERS: Final = 2
#: Open times per chunk of :meth:`InfluxDBCandleStore.open_times`.
_TIMES_CHUNK: Final = 250_000
_DTYPES: Final[dict[str, Any]] = {"time": np.int64, **dict.fromkeys(VALUE_COLUMNS, np.float64)}
_DTYPES.update({QUOTE_VOLUME: np.float64, TRADE_COUNT: "Int64", **dict.fromkeys(DERIVED_COLUMNS, "Int64")})
# InfluxDB's time range: the parser keeps the two extreme int64 values for itself.
_MIN_NS: Final = -(2**63) + 2
_MAX_NS: Final = 2**63 - 2


def _literal(text: str) -> str:
    """``text`` as literal template text: braces doubled, so ``str.format`` copies it unchanged."""
    return text.replace("{", "{{").replace("}", "}}")


def format_candle_lines(
    prepared: PreparedCandles, *, measurement: str = "candles", start: int = 0, stop: int | None = None
) -> list[str]:
    """Line protocol for rows ``[start, stop)`` of ``prepared``, byte-identical to
    :func:`~marketkeeper.influxdb.format_line` per candle (tags exchange/symbol/timeframe; fields open, high,
    low, close, volume, then quote_volume, trade_count, source_count and expected_count where present;
    nanosecond times).

    :raises ValueError: a name line protocol cannot carry (see :mod:`marketkeeper.influxdb.lineprotocol`).
    """
    if prepared.derived:
        return _with_derived_fields(prepared, measurement=measurement, start=start, stop=stop)
    key = prepared.key
    # The escaped measurement and tags are user text: they reach each line as the template's first
    # *argument* ("{}" copies it verbatim), never as template text.
    head = escape_measurement(measurement) + "".join(
        "," + escape_tag(tag) + "=" + escape_tag(value)
        for tag, value in sorted(zip(_TAG_KEYS, (key.exchange, key.symbol, str(key.timeframe)), strict=True))
    )
    stop = len(prepared) if stop is None else min(stop, len(prepared))
    rows = slice(start, stop)
    # tolist() yields Python floats and ints, so "{!r}" is float.__repr__ (the shortest round-trip text)
    # and "{}" is str(int): exactly what format_line writes.
    columns: list[list[Any]] = [prepared.values[name][rows].tolist() for name in VALUE_COLUMNS]
    base = "{} " + ",".join(_literal(escape_field_key(name)) + "={!r}" for name in VALUE_COLUMNS)
    times = prepared.times_ns[rows].tolist()
    qv_present = prepared.quote_volume_present
    tc_present = prepared.trade_count_present
    has_qv = None if qv_present is None else qv_present[rows]
    has_tc = None if tc_present is None else tc_present[rows]

    def template(qv: bool, tc: bool) -> str:
        text = base
        if qv:
            text += "," + _literal(escape_field_key(QUOTE_VOLUME)) + "={!r}"
        if tc:
            text += "," + _literal(escape_field_key(TRADE_COUNT)) + "={}i"
        return text + " {}"

    extra: list[list[Any]] = []
    if prepared.quote_volume is not None:
        extra.append(prepared.quote_volume[rows].tolist())
    if prepared.trade_count is not None:
        extra.append(prepared.trade_count[rows].tolist())
    all_qv = has_qv is not None and bool(has_qv.all())
    all_tc = has_tc is not None and bool(has_tc.all())
    none_qv = has_qv is None or not has_qv.any()
    none_tc = has_tc is None or not has_tc.any()
    if (all_qv or none_qv) and (all_tc or none_tc):
        # The common case: every row has the same fields, one template for the chunk.
        used = []
        if all_qv:
            used.append(extra[0])
        if all_tc:
            used.append(extra[-1])
        return list(map(template(all_qv, all_tc).format, repeat(head, stop - start), *columns, *used, times))

    # Rows differ in which optional fields they carry: format each pattern, put rows back in order.
    n = stop - start
    qv_mask = np.zeros(n, dtype=np.bool_) if has_qv is None else has_qv
    tc_mask = np.zeros(n, dtype=np.bool_) if has_tc is None else has_tc
    qv_values = extra[0] if prepared.quote_volume is not None else None
    tc_values = extra[-1] if prepared.trade_count is not None else None
    out = np.empty(n, dtype=object)
    for qv in (False, True):
        for tc in (False, True):
            index = np.flatnonzero((qv_mask == qv) & (tc_mask == tc))
            if len(index) == 0:
                continue
            picked = [[head] * len(index), *([column[i] for i in index] for column in columns)]
            if qv and qv_values is not None:
                picked.append([qv_values[i] for i in index])
            if tc and tc_values is not None:
                picked.append([tc_values[i] for i in index])
            picked.append([times[i] for i in index])
            out[index] = list(map(template(qv, tc).format, *picked))
    lines: list[str] = out.tolist()
    return lines


def _with_derived_fields(prepared: PreparedCandles, *, measurement: str, start: int, stop: int | None) -> list[str]:
    """:func:`format_candle_lines` of a derived tier's write: the lines without the counts, each count field
    inserted before the timestamp. Python per row, but only tier writes take it (a year of 5m is 105k rows)."""
    lines = format_candle_lines(replace(prepared, derived={}), measurement=measurement, start=start, stop=stop)
    rows = slice(start, start + len(lines))
    suffixes = [""] * len(lines)
    for name, counts in prepared.derived.items():
        field = "," + escape_field_key(name) + "="
        for i, count in enumerate(counts[rows].tolist()):
            if count >= 0:
                suffixes[i] += f"{field}{count}i"
    out = []
    for line, suffix in zip(lines, suffixes, strict=True):
        cut = line.rindex(" ")  # the timestamp follows the last space; escaped spaces come before it
        out.append(line[:cut] + suffix + line[cut:])
    return out


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
        chunks = range(0, len(prepared), CHUNK_ROWS)
        if len(chunks) == 1:
            self._client.write_lines(format_candle_lines(prepared, measurement=self._measurement))
            return
        # Formatting is CPU work under the GIL; posting waits on the server with the GIL released, so the
        # next chunk is formatted while the last one is in flight.
        pending: deque[Future[int]] = deque()
        with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="influx-candles") as pool:
            try:
                for begin in chunks:
                    lines = format_candle_lines(
                        prepared, measurement=self._measurement, start=begin, stop=begin + CHUNK_ROWS
                    )
                    while len(pending) >= _WRITERS:
                        pending.popleft().result()
                    pending.append(pool.submit(self._client.write_lines, lines))
                while pending:
                    pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    # --- reads ----------------------------------------------------------------------------------------

    def _query(self, q: str, params: dict[str, object]) -> list[Series]:
        return self._client.query(q, params=params, epoch="ns")

    def _chunks(self, key: SeriesKey, fields: tuple[str, ...], start: datetime, end: datetime, rows: int) -> Any:
        # One chunked query, ascending by time (InfluxQL's default order): the server streams it as it reads.
        q = self._select(fields, " AND time >= $start AND time < $end")
        params = self._params(key, start=_to_ns(start), end=_to_ns(end))
        return self._client.query_chunked(q, params=params, chunk_size=rows)

    def _frames(self, key: SeriesKey, start: datetime, end: datetime, chunk_rows: int) -> Iterator[pd.DataFrame]:
        with self._failing("read", key, start, end):
            for chunk in self._chunks(key, _FIELDS, start, end, chunk_rows):
                yield _chunk_frame(chunk)

    def latest(self, key: SeriesKey, n: int = 1) -> pd.DataFrame:
        self._check_n(n)
        with self._failing("latest", self._check_key(key)):
            result = self._query(self._select(_FIELDS, "", " ORDER BY time DESC LIMIT $n"), self._params(key, n=n))
            frame = _frame(result)
            return frame.iloc[::-1].reset_index(drop=True)

    def _edge(self, key: SeriesKey, *, first: bool, operation: str) -> datetime | None:
        function = "first" if first else "last"
        with self._failing(operation, self._check_key(key)):
            q = f"SELECT {function}({quote_identifier('open')}) FROM {self._from} WHERE {self._series_filter}"  # noqa: S608
            result = self._query(q, self._params(key))
            if not result or not result[0].values:
                return None
            return pd.Timestamp(int(result[0].values[0][0]), tz="UTC").to_pydatetime()

    def open_times(self, key: SeriesKey, start: datetime, end: datetime) -> npt.NDArray[np.int64]:
        start, end = self._range(start, end)
        with self._failing("open_times", self._check_key(key), start, end):
            parts = [_chunk_times(chunk) for chunk in self._chunks(key, ("open",), start, end, _TIMES_CHUNK)]
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


def _frame(pages: list[Series]) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {"time": [], **{name: [] for name in _FIELDS}}
    for page in pages:
        index = {name: i for i, name in enumerate(page.columns)}
        rows = page.values
        for name, values in columns.items():
            at = index.get(name)
            values.extend([None] * len(rows) if at is None else [row[at] for row in rows])
    quote_volume = np.array([np.nan if v is None else v for v in columns[QUOTE_VOLUME]], dtype=np.float64)
    return frame_from_columns(
        np.array(columns["time"], dtype=np.int64),
        {name: np.array(columns[name], dtype=np.float64) for name in VALUE_COLUMNS},
        quote_volume=quote_volume,
        trade_count=columns[TRADE_COUNT],
        derived={name: columns[name] for name in DERIVED_COLUMNS},
    )


def _parse(chunk: Chunk, **options: Any) -> pd.DataFrame:
    # The C parser rounds every decimal to the nearest double (exact, like json.loads); "null" is no value.
    return pd.read_csv(
        io.BytesIO(chunk.csv),
        header=None,
        names=chunk.columns,
        na_values=["null"],
        keep_default_na=False,
        engine="c",
        **options,
    )


def _chunk_frame(chunk: Chunk) -> pd.DataFrame:
    table = _parse(chunk, dtype={name: _DTYPES.get(name, object) for name in chunk.columns})
    missing = pd.Series(np.full(len(table), np.nan))
    return frame_from_columns(
        table["time"].to_numpy(dtype=np.int64),
        {name: table.get(name, missing).to_numpy(dtype=np.float64) for name in VALUE_COLUMNS},
        quote_volume=table.get(QUOTE_VOLUME, missing).to_numpy(dtype=np.float64),
        trade_count=table[TRADE_COUNT].array if TRADE_COUNT in table else None,
        derived={name: table[name].array for name in DERIVED_COLUMNS if name in table},
    )


def _chunk_times(chunk: Chunk) -> npt.NDArray[np.int64]:
    return np.asarray(_parse(chunk, usecols=[0], dtype={"time": np.int64})["time"].to_numpy(), dtype=np.int64)
