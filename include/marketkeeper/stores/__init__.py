"""Candle stores: one :class:`CandleStore` interface with an InfluxDB and a SQL implementation.

Which one a job uses is chosen in one place, :meth:`marketkeeper.store_set.StoreSet.open`. The interface's other
errors and frame helpers are imported from :mod:`marketkeeper.stores.base`. Each backend is imported when first
named, so a job pays only for the driver of the store it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from marketkeeper.stores.base import CandleStore, CandleStoreError

if TYPE_CHECKING:
    from marketkeeper.stores.influxdb import InfluxDBCandleStore
    from marketkeeper.stores.sql import SQLCandleStore

__all__ = ["CandleStore", "CandleStoreError", "InfluxDBCandleStore", "SQLCandleStore"]

_BACKENDS = {"InfluxDBCandleStore": "marketkeeper.stores.influxdb", "SQLCandleStore": "marketkeeper.stores.sql"}


def __getattr__(name: str) -> Any:
    if name not in _BACKENDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_BACKENDS[name]), name)
