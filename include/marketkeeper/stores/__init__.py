"""Candle stores: one :class:`CandleStore` interface with an InfluxDB and a SQL implementation.

Which one a job uses is chosen in one place, :meth:`marketkeeper.store_set.StoreSet.build`.
"""

from __future__ import annotations

from marketkeeper.stores.base import (
    CandleStore,
    CandleStoreError,
    CandleStoreMissingError,
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
    "CandleStoreMissingError",
    "CandleStoreUnavailableError",
    "InfluxDBCandleStore",
    "PreparedCandles",
    "SQLCandleStore",
    "format_candle_lines",
    "frame_from_columns",
    "prepare_candles",
]
