"""The SQL candle store: the ledger's ``candles`` table on PostgreSQL (bulk COPY + one upsert) or SQLite.

Prices and volumes are ``DOUBLE PRECISION`` (SQLite: ``REAL``), the IEEE doubles a candle frame holds, so
every finite value reads back as the very float written, as it does from InfluxDB (a ``NUMERIC(38, 18)``
column rounded 1.2345678901234567e-10 and stored 1e-19 as 0). On PostgreSQL a write is one transaction: a
binary ``COPY`` of float8 rows into a temporary table (:mod:`marketkeeper.stores.sql_copy`), then one
``INSERT .. SELECT .. ON CONFLICT DO UPDATE .. WHERE`` the values differ, so an identical rewrite touches no
row; the bits travel unconverted end to end. A small write (up to ``_SMALL_WRITE`` rows) is that same upsert
from bound arrays (``unnest``) instead of the staging table, in one statement; so are the small writes of
several series at once (``write_many``), each row carrying its series. The statements live in
:mod:`marketkeeper.stores.sql_write`. On SQLite the upsert is an executemany.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Final

import psycopg
import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from marketkeeper.series import DERIVED_COLUMNS, QUOTE_VOLUME, TRADE_COUNT, VALUE_COLUMNS, SeriesKey
from marketkeeper.stores.base import (
    CandleStore,
    CandleStoreError,
    CandleStoreMissingError,
    CandleStoreUnavailableError,
)
from marketkeeper.stores.sql_write import OPTIONAL_COLUMNS as _OPTIONAL
from marketkeeper.stores.sql_write import candles_table as _table
from marketkeeper.stores.sql_write import (
    pg_insert,
    pg_upsert,
    series_params,
    sqlite_upsert,
    unnest_many_params,
    unnest_params,
    unnested,
)

if TYPE_CHECKING:
    # numpy, pandas and the binary COPY (sql_copy) are imported by the methods that build or take frames: a
    # CSV export (sql_csv) needs only SQLAlchemy and psycopg.
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from marketkeeper.stores.prepared import PreparedCandles

__all__ = ["SQLCandleStore"]

log = logging.getLogger(__name__)

_SQLITE_CHUNK: Final = 10_000
#: Up to this many rows a PostgreSQL write is one ``INSERT .. SELECT .. FROM unnest(arrays)`` upsert (of
#: one series, or of several series' writes joined by :meth:`CandleStore.write_many`).
_SMALL_WRITE: Final = 1_000


class SQLCandleStore(CandleStore):
    """Candles in the ledger's ``candles`` table (migrated by :mod:`marketkeeper.ledger.migrate`).

    :param engine: an engine on the ledger, e.g. from :func:`~marketkeeper.ledger.create_ledger_engine`.
    :param owns_engine: dispose of the engine in :meth:`close` (for an engine made for this store alone).
    """

    def __init__(self, engine: Engine, *, owns_engine: bool = False) -> None:
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"the SQL candle store runs on PostgreSQL or SQLite, not {dialect}")
        self._engine = engine
        self._owns_engine = owns_engine
        self.backend = dialect

    # Built on the first write: a read needs no statement object (see _table).
    @functools.cached_property
    def _upsert(self) -> sa.Insert:
        return pg_upsert() if self.backend == "postgresql" else sqlite_upsert()

    @functools.cached_property
    def _small_upsert(self) -> sa.Insert:
        return pg_upsert(unnested())

    @functools.cached_property
    def _many_upsert(self) -> sa.Insert:
        return pg_upsert(unnested(series_in_rows=True), series_in_rows=True)

    @functools.cached_property
    def _insert(self) -> postgresql.Insert | None:
        return pg_insert() if self.backend == "postgresql" else None

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def name(self) -> str:
        return f"SQL candle store ({self._engine.url.render_as_string(hide_password=True)})"

    _client_errors: ClassVar[tuple[type[Exception], ...]] = (sa.exc.SQLAlchemyError, psycopg.Error)

    def _classify(self, exc: Exception) -> tuple[type[CandleStoreError], str]:
        cause = f"{type(exc).__name__}: {str(getattr(exc, 'orig', None) or exc).strip()}"
        orig = getattr(exc, "orig", exc)
        text = str(orig).lower()
        if isinstance(orig, psycopg.errors.UndefinedTable) or "no such table" in text:
            # The first line names the table; the rest is the SQL text PostgreSQL points into.
            first = cause.splitlines()[0]
            return CandleStoreMissingError, f"{first}; create the table with `marketkeeper db upgrade`"
        if self.backend == "postgresql":
            unreachable = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | psycopg.OperationalError)
        else:
            unreachable = isinstance(exc, sa.exc.OperationalError) and "unable to open database file" in text
        return (CandleStoreUnavailableError if unreachable else CandleStoreError), cause

    def _where(self, key: SeriesKey) -> sa.ColumnElement[bool]:
        t = _table().c
        return sa.and_(
            t.exchange == key.exchange, t.symbol == key.symbol, t.timeframe == str(self._check_key(key).timeframe)
        )

    def _in_range(self, key: SeriesKey, start: datetime, end: datetime) -> sa.ColumnElement[bool]:
        t = _table().c
        return sa.and_(self._where(key), t.open_time >= start, t.open_time < end)

    # --- writes ---------------------------------------------------------------------------------------

    def _check_writable(self, key: SeriesKey) -> None:
        for name in ("exchange", "symbol"):
            limit = getattr(_table().c[name].type, "length", None)
            if limit is not None and len(getattr(key, name)) > limit:
                raise CandleStoreError(
                    f"{name} {getattr(key, name)!r} is longer than the {limit} characters the table holds",
                    store=self.name,
                    operation="write",
                    key=key,
                )

    def _write(self, prepared: PreparedCandles) -> None:
        if self.backend == "postgresql" and len(prepared) <= _SMALL_WRITE:
            # A few rows (a derived tier's incremental buckets, a live tick): the cost is round trips, so one
            # upsert of bound arrays replaces the staging table, COPY and existence check; a single statement
            # is atomic by itself, so it runs without BEGIN and COMMIT (two round trips more).
            with self._engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(self._small_upsert, {**series_params(prepared.key), **unnest_params(prepared)})
            return
        with self._engine.begin() as conn:
            if self.backend == "postgresql":
                self._write_postgresql(conn, prepared)
            else:
                self._write_sqlite(conn, prepared)

    def _write_many(self, prepared: Sequence[PreparedCandles]) -> None:
        if self.backend != "postgresql" or len(prepared) < 2 or sum(map(len, prepared)) > _SMALL_WRITE:
            super()._write_many(prepared)
            return
        # The small writes of several series (a derived tier's incremental buckets in every tier): one upsert
        # of bound arrays with the series per row, in autocommit as a small write is; one statement stores
        # every row or none.
        with self._writing(prepared), self._engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(self._many_upsert, unnest_many_params(prepared))

    def _write_postgresql(self, conn: Connection, prepared: PreparedCandles) -> None:
        from marketkeeper.stores.sql_copy import stage_candles

        stage_candles(conn, prepared)
        params = series_params(prepared.key)
        # New candles (the usual case: ingestion moves forward) skip ON CONFLICT's speculative insertion, which
        # costs about a third of the write. A plain INSERT is all-or-nothing, so a row another writer stored
        # meanwhile only rolls back the savepoint, and the upsert then does the job.
        stored = conn.scalar(sa.select(sa.exists().where(self._in_range(prepared.key, prepared.start, prepared.end))))
        if not stored and self._insert is not None:
            try:
                with conn.begin_nested():
                    conn.execute(self._insert, params)
                return
            except sa.exc.IntegrityError:
                log.debug("candles of %s appeared during the write; upserting instead", prepared.key)
        conn.execute(self._upsert, params)

    def _write_sqlite(self, conn: Connection, prepared: PreparedCandles) -> None:
        import pandas as pd

        series = series_params(prepared.key)
        times = pd.DatetimeIndex(prepared.times_ns.view("datetime64[ns]"), tz="UTC").to_pydatetime()
        # sqlite3 binds Python floats as IEEE doubles, bit for bit.
        columns: dict[str, list[Any]] = {name: prepared.values[name].tolist() for name in VALUE_COLUMNS}
        if prepared.quote_volume is not None:
            columns[QUOTE_VOLUME] = [None if v != v else v for v in prepared.quote_volume.tolist()]
        present = prepared.trade_count_present
        if prepared.trade_count is not None and present is not None:
            columns[TRADE_COUNT] = [
                c if p else None for c, p in zip(prepared.trade_count.tolist(), present.tolist(), strict=True)
            ]
        for name, counts in prepared.derived.items():
            columns[name] = [None if c < 0 else c for c in counts.tolist()]
        n = len(prepared)
        for name in _OPTIONAL:
            columns.setdefault(name, [None] * n)
        names = list(columns)
        rows = [
            {**series, "open_time": t, **dict(zip(names, values, strict=True))}
            for t, *values in zip(times, *columns.values(), strict=True)
        ]
        for begin in range(0, n, _SQLITE_CHUNK):
            conn.execute(self._upsert, rows[begin : begin + _SQLITE_CHUNK])

    # --- reads ----------------------------------------------------------------------------------------

    def _select(self) -> sa.Select:
        t = _table().c
        # On PostgreSQL epoch microseconds keep Python out of the per-row datetime work (exact numerics on
        # PG >= 14).
        when = self._time_us() if self.backend == "postgresql" else t.open_time
        return sa.select(
            when, *(t[name] for name in (*VALUE_COLUMNS, QUOTE_VOLUME)), t.trade_count, *(t[n] for n in DERIVED_COLUMNS)
        )

    def _time_us(self) -> sa.ColumnElement[int]:
        return sa.cast(sa.extract("epoch", _table().c.open_time) * 1_000_000, sa.BigInteger())

    def _times_ns(self, values: Sequence[Any]) -> npt.NDArray[np.int64]:
        import numpy as np
        import pandas as pd

        if self.backend == "postgresql":
            return np.array(values, dtype=np.int64) * 1000
        if not values:
            return np.empty(0, dtype=np.int64)
        return np.asarray(pd.DatetimeIndex(list(values)).tz_convert("UTC").as_unit("ns").asi8, dtype=np.int64)

    def _to_frame(self, rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
        import numpy as np

        from marketkeeper.stores.frames import frame_from_columns

        columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in range(10)]
        times, *values, quote_volume, trade_count, source_count, expected_count = columns
        return frame_from_columns(
            self._times_ns(times),
            {name: np.array(column, dtype=np.float64) for name, column in zip(VALUE_COLUMNS, values, strict=True)},
            quote_volume=np.array([np.nan if v is None else v for v in quote_volume], dtype=np.float64),
            trade_count=list(trade_count),
            derived=dict(zip(DERIVED_COLUMNS, (list(source_count), list(expected_count)), strict=True)),
        )

    def _frames(self, key: SeriesKey, start: datetime, end: datetime, chunk_rows: int) -> Iterator[pd.DataFrame]:
        with self._failing("read", key, start, end), self._engine.connect() as conn:
            if self.backend == "postgresql":
                from marketkeeper.stores.sql_copy import copy_frames

                # One streamed binary COPY parsed by numpy: no Python object per row or value.
                yield from copy_frames(conn, key, start, end, chunk_rows)
                return
            stmt = self._select().where(self._in_range(key, start, end)).order_by(_table().c.open_time)
            for rows in conn.execute(stmt).partitions(chunk_rows):
                yield self._to_frame(rows)

    def write_csv(self, key: SeriesKey, start: datetime, end: datetime, out: BinaryIO) -> int:
        """See :meth:`CandleStore.write_csv`. On PostgreSQL the server formats the CSV and its bytes stream
        straight to ``out`` (one ``COPY (SELECT ..) TO STDOUT (FORMAT csv)``, series and range bound by psycopg):
        floats print as PostgreSQL's shortest round-trip text (``7``, ``1e+16``), each the double stored."""
        if self.backend != "postgresql":
            return super().write_csv(key, start, end, out)
        start, end = self._range(start, end)
        self._check_key(key)
        from marketkeeper.stores.sql_csv import copy_csv

        with self._failing("read", key, start, end), self._engine.connect() as conn:
            return copy_csv(conn, key, start, end, out)

    def latest(self, key: SeriesKey, n: int = 1) -> pd.DataFrame:
        self._check_n(n)
        stmt = self._select().where(self._where(key)).order_by(_table().c.open_time.desc()).limit(n)
        with self._failing("latest", key), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return self._to_frame(rows[::-1])

    def _edge(self, key: SeriesKey, *, first: bool, operation: str) -> datetime | None:
        function = sa.func.min if first else sa.func.max
        stmt = sa.select(function(_table().c.open_time)).where(self._where(key))
        with self._failing(operation, key), self._engine.connect() as conn:
            value: datetime | None = conn.execute(stmt).scalar_one()
        return value

    def open_times(self, key: SeriesKey, start: datetime, end: datetime) -> npt.NDArray[np.int64]:
        start, end = self._range(start, end)
        self._check_key(key)
        with self._failing("open_times", key, start, end), self._engine.connect() as conn:
            if self.backend == "postgresql":
                from marketkeeper.stores.sql_copy import copy_open_times

                return copy_open_times(conn, key, start, end)
            stmt = sa.select(_table().c.open_time).where(self._in_range(key, start, end)).order_by(_table().c.open_time)
            values = conn.execute(stmt).scalars().all()
        return self._times_ns(values)

    def count(self, key: SeriesKey, start: datetime, end: datetime) -> int:
        start, end = self._range(start, end)
        stmt = sa.select(sa.func.count()).select_from(_table()).where(self._in_range(key, start, end))
        with self._failing("count", key, start, end), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def list_series(self) -> list[SeriesKey]:
        t = _table().c
        stmt = sa.select(t.exchange, t.symbol, t.timeframe).distinct().order_by(t.exchange, t.symbol, t.timeframe)
        with self._failing("list_series"), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return self._series_keys((f"row ({e!r}, {s!r}, {tf!r})", (e, s, tf)) for e, s, tf in rows)

    def delete_range(self, key: SeriesKey, start: datetime, end: datetime) -> int:
        start, end = self._range(start, end)
        stmt = sa.delete(_table()).where(self._in_range(key, start, end))
        with self._failing("delete_range", key, start, end), self._engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()
