"""The SQL store's write statements: the ``candles`` table and the upserts into it (from the COPY staging
table, from bound arrays for one series, or for several series at once), with their parameters.

Every upsert has the same ``SET`` and ``WHERE`` (:func:`_upsert_set`): new values replace old ones, absent
optional values keep the stored ones, and an unchanged row is not updated at all.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from marketkeeper.ledger.types import UTCDateTime
from marketkeeper.series import DERIVED_COLUMNS, QUOTE_VOLUME, TRADE_COUNT, VALUE_COLUMNS, SeriesKey

if TYPE_CHECKING:
    from marketkeeper.stores.prepared import PreparedCandles

__all__ = [
    "KEY_COLUMNS",
    "OPTIONAL_COLUMNS",
    "STAGING_TABLE",
    "candles_table",
    "pg_insert",
    "pg_upsert",
    "series_params",
    "sqlite_upsert",
    "staging",
    "unnest_many_params",
    "unnest_params",
    "unnested",
]

KEY_COLUMNS: Final = ("exchange", "symbol", "timeframe", "open_time")
OPTIONAL_COLUMNS: Final = (QUOTE_VOLUME, TRADE_COUNT, *DERIVED_COLUMNS)
_SERIES_COLUMNS: Final = ("exchange", "symbol", "timeframe")
_NAN: Final[sa.ColumnElement[float]] = sa.literal_column("'NaN'::float8", postgresql.DOUBLE_PRECISION())
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: The temporary table a large PostgreSQL write is COPYed into (``sql_copy.stage_candles``) before the upsert.
STAGING_TABLE: Final = "marketkeeper_candles_staging"

#: The staging table for SQLAlchemy statements that read it (the upsert's ``INSERT .. SELECT``).
staging = sa.table(
    STAGING_TABLE,
    sa.column("open_time", UTCDateTime()),
    *(sa.column(name, postgresql.DOUBLE_PRECISION()) for name in (*VALUE_COLUMNS, QUOTE_VOLUME)),
    sa.column("has_trade_count", sa.Boolean()),
    sa.column(TRADE_COUNT, sa.BigInteger()),
    *(sa.column(name, sa.BigInteger()) for name in DERIVED_COLUMNS),
)


@functools.cache
def candles_table() -> sa.Table:
    """The ledger's ``candles`` table, from its ORM model imported on first use rather than with the store:
    a PostgreSQL read streams a COPY and needs neither the table nor the ORM's registry of every model, whose
    import is a sixth of a ``marketkeeper candles`` start-up."""
    from marketkeeper.ledger.models import Candle

    return cast(sa.Table, Candle.__table__)


def _upsert_set(excluded: Any) -> tuple[dict[str, Any], Any]:
    """The ``SET`` and ``WHERE`` of the upsert: new values replace old ones, absent optional values keep
    the stored ones, and a row whose values are all unchanged is not updated at all."""
    t = candles_table().c
    new: dict[str, Any] = {name: excluded[name] for name in VALUE_COLUMNS}
    for name in OPTIONAL_COLUMNS:
        new[name] = sa.func.coalesce(excluded[name], t[name])
    changed = sa.or_(*(t[name].is_distinct_from(value) for name, value in new.items()))
    return {**new, "ingested_at": excluded.ingested_at}, changed


def pg_insert(rows: Any = staging, *, series_in_rows: bool = False) -> postgresql.Insert:
    """``INSERT .. SELECT`` of the staged rows (or of ``rows``, any selectable with the staging table's
    columns); :func:`pg_upsert` adds the conflict handling. The series is bound once (``exchange``, ``symbol``,
    ``timeframe`` parameters) unless ``series_in_rows``: then each row carries its own, as columns of ``rows``."""
    s = rows.c
    if series_in_rows:
        series: list[Any] = [s[name] for name in _SERIES_COLUMNS]
    else:
        series = [sa.bindparam(name, type_=sa.String()) for name in _SERIES_COLUMNS]
    source = sa.select(
        *series,
        s.open_time,
        # float8 to float8: the doubles are stored bit for bit.
        *(s[name] for name in VALUE_COLUMNS),
        # NaN marks an absent quote volume (NULLIF: float8 NaN equals NaN in PostgreSQL).
        sa.func.nullif(s.quote_volume, _NAN),
        sa.case((s.has_trade_count, s.trade_count)),
        # -1 marks an absent derived count (counts are never negative).
        *(sa.func.nullif(s[name], -1) for name in DERIVED_COLUMNS),
        sa.bindparam("ingested_at", type_=UTCDateTime()),
    )
    return postgresql.insert(candles_table()).from_select(
        [*KEY_COLUMNS, *VALUE_COLUMNS, QUOTE_VOLUME, TRADE_COUNT, *DERIVED_COLUMNS, "ingested_at"], source
    )


def pg_upsert(rows: Any = staging, *, series_in_rows: bool = False) -> sa.Insert:
    """:func:`pg_insert` with ``ON CONFLICT DO UPDATE``."""
    insert = pg_insert(rows, series_in_rows=series_in_rows)
    set_, where = _upsert_set(insert.excluded)
    return insert.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=set_, where=where)


def sqlite_upsert() -> sa.Insert:
    from sqlalchemy.dialects import sqlite  # imported by the SQLite store alone

    insert = sqlite.insert(candles_table())
    set_, where = _upsert_set(insert.excluded)
    return insert.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=set_, where=where)


def unnested(*, series_in_rows: bool = False) -> sa.TableValuedAlias:
    """The staging table's columns as one bound array each, ``unnest``-ed into rows: a small write's source,
    one statement with no temporary table, COPY or existence check (each a round trip). With
    ``series_in_rows`` three text arrays (exchange, symbol, timeframe) come first, so one statement writes
    rows of several series."""

    def array(name: str, item: Any) -> sa.BindParameter[Any]:
        return sa.bindparam(name, type_=postgresql.ARRAY(item))

    series = [array(name, sa.Text()) for name in _SERIES_COLUMNS] if series_in_rows else []
    unnest = sa.func.unnest(
        *series,
        array("open_time", sa.DateTime(timezone=True)),
        *(array(name, postgresql.DOUBLE_PRECISION()) for name in (*VALUE_COLUMNS, QUOTE_VOLUME)),
        array("has_trade_count", sa.Boolean()),
        array(TRADE_COUNT, sa.BigInteger()),
        *(array(name, sa.BigInteger()) for name in DERIVED_COLUMNS),
    )
    names = [*(_SERIES_COLUMNS if series_in_rows else ()), *staging.c.keys()]
    return unnest.table_valued(*names).render_derived(name="small_write")


def series_params(key: SeriesKey) -> dict[str, Any]:
    """The bound series and write time of a one-series upsert."""
    return {
        "exchange": key.exchange,
        "symbol": key.symbol,
        "timeframe": str(key.timeframe),
        "ingested_at": datetime.now(UTC),
    }


def unnest_params(prepared: PreparedCandles) -> dict[str, list[Any]]:
    """The arrays of :func:`unnested`, with the staging table's markers for absent values (NaN, false, -1).
    psycopg sends each float as its ``repr``, which PostgreSQL parses back into the very same double."""
    import numpy as np

    n = len(prepared)
    counts, present = prepared.trade_count, prepared.trade_count_present
    if counts is None or present is None:
        counts, present = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    quote_volume = np.full(n, np.nan) if prepared.quote_volume is None else prepared.quote_volume
    return {
        "open_time": [_EPOCH + timedelta(microseconds=us) for us in (prepared.times_ns // 1000).tolist()],
        **{name: prepared.values[name].tolist() for name in VALUE_COLUMNS},
        QUOTE_VOLUME: quote_volume.tolist(),
        "has_trade_count": present.tolist(),
        TRADE_COUNT: counts.tolist(),
        **{name: prepared.derived.get(name, np.full(n, -1)).tolist() for name in DERIVED_COLUMNS},
    }


def unnest_many_params(prepared: Sequence[PreparedCandles]) -> dict[str, Any]:
    """The arrays of :func:`unnested` with ``series_in_rows`` for the writes of several series, one after the
    other, and their one write time."""
    params: dict[str, Any] = {name: [] for name in (*_SERIES_COLUMNS, *staging.c.keys())}
    for one in prepared:
        n = len(one)
        key = one.key
        for name, value in zip(_SERIES_COLUMNS, (key.exchange, key.symbol, str(key.timeframe)), strict=True):
            params[name] += [value] * n
        for name, values in unnest_params(one).items():
            params[name] += values
    params["ingested_at"] = datetime.now(UTC)
    return params
