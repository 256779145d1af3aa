"""Candle stores: one :class:`CandleStore` interface with an InfluxDB and a SQL implementation.

Which one a job uses is chosen in one place, :meth:`marketkeeper.store_set.StoreSet.open`. The interface's other
errors and frame helpers are imported from :mod:`marketkeeper.stores.base`.
"""

from __future__ import annotations

from marketkeeper.stores.base import CandleStore, CandleStoreError
from marketkeeper.stores.influxdb import InfluxDBCandleStore
from marketkeeper.stores.sql import SQLCandleStore

__all__ = ["CandleStore", "CandleStoreError", "InfluxDBCandleStore", "SQLCandleStore"]
