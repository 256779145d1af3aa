"""The stores one job uses, opened together and closed together: ledger, candle store, Redis candle cache.

The CLI builds it from the environment (:meth:`StoreSet.from_settings`); Airflow tasks build it from
Connections (``marketkeeper.airflow.stores.open_store_set``). Both end in :meth:`StoreSet.build`, so the choice
of candle store is made in one place: InfluxDB when configured, else the SQL store on the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import sqlalchemy as sa

from marketkeeper.candle_cache import CandleCache
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.redis_client import RedisClient
from marketkeeper.settings import Settings
from marketkeeper.stores.base import CandleStore


@dataclass
class StoreSet:
    ledger: sa.Engine
    candles: CandleStore
    cache: CandleCache | None

    @classmethod
    def build(cls, ledger_url: str, influxdb: InfluxDBClient | None, redis: RedisClient | None) -> StoreSet:
        """Open the stores; the clients passed in are owned (and closed) by the set from now on."""
        from marketkeeper.ledger import create_ledger_engine
        from marketkeeper.stores.influxdb import InfluxDBCandleStore
        from marketkeeper.stores.sql import SQLCandleStore

        engine = create_ledger_engine(ledger_url)
        candles: CandleStore = (
            InfluxDBCandleStore(influxdb, owns_client=True) if influxdb is not None else SQLCandleStore(engine)
        )
        return cls(ledger=engine, candles=candles, cache=CandleCache(redis) if redis is not None else None)

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreSet:
        influxdb = InfluxDBClient.from_settings(settings) if settings.influxdb_url else None
        redis = RedisClient(settings.redis_url.get_secret_value()) if settings.redis_url is not None else None
        return cls.build(settings.ledger_url, influxdb, redis)

    @property
    def description(self) -> str:
        """Which stores are in use, for a summary line (no secrets)."""
        ledger = self.ledger.url.render_as_string(hide_password=True)
        return f"ledger {ledger}; candles in {self.candles.name}; Redis {'on' if self.cache else 'off'}"

    def close(self) -> None:
        self.candles.close()
        if self.cache is not None:
            self.cache.client.close()
        self.ledger.dispose()

    def __enter__(self) -> StoreSet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
