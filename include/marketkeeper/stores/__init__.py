"""Candle stores: one :class:`CandleStore` interface, an InfluxDB and a SQL implementation, and the factory
that picks one from the settings (InfluxDB when ``INFLUXDB_URL`` is set, else the ledger's SQL table).
"""

from __future__ import annotations

from typing import Any

from marketkeeper.settings import Settings, get_settings
from marketkeeper.stores.base import (
    CandleStore,
    CandleStoreError,
    CandleStoreUnavailableError,
    PreparedCandles,
    frame_from_columns,
    prepare_candles,
)
from marketkeeper.stores.influxdb import InfluxDBCandleStore, format_candle_lines
from marketkeeper.stores.sql import SQLCandleStore

__all__ = [
    "CandleStore",
    "CandleStoreError",
    "CandleStoreUnavailableError",
    "InfluxDBCandleStore",
    "PreparedCandles",
    "SQLCandleStore",
    "format_candle_lines",
    "frame_from_columns",
    "make_candle_store",
    "prepare_candles",
]


def make_candle_store(settings: Settings | None = None, **client_kwargs: Any) -> CandleStore:
    """The configured candle store; it owns its client or engine, so close it (or use it in ``with``).

    :param settings: where the stores are (default: :func:`~marketkeeper.settings.get_settings`).
    :param client_kwargs: keyword arguments of :class:`~marketkeeper.influxdb.InfluxDBClient` (``timeout``,
        ``batch_size``...) or, for the SQL store, of :func:`~marketkeeper.ledger.create_ledger_engine`.
    :raises ConfigurationError: a URL in the settings is malformed.
    """
    settings = settings if settings is not None else get_settings()
    if settings.influxdb_url:
        from marketkeeper.influxdb import InfluxDBClient

        return InfluxDBCandleStore(InfluxDBClient.from_settings(settings, **client_kwargs), owns_client=True)
    from marketkeeper.ledger.engine import create_ledger_engine

    return SQLCandleStore(create_ledger_engine(settings.ledger_url, **client_kwargs), owns_engine=True)
