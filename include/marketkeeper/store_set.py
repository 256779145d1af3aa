"""The one place stores are chosen and opened: a :class:`StoreConfig` says where a deployment's stores are,
:meth:`StoreSet.open` opens them together (ledger, candle store, Redis candle cache) and closes them together.

The CLI gets its config from the environment (:meth:`StoreConfig.from_settings`), Airflow tasks from
Connections (``marketkeeper.airflow.stores.store_config``), tests from their fixtures; every service function
opens its stores from a config through :meth:`StoreSet.open`, so the choice of candle store is made here
only: InfluxDB when configured, else the SQL store on the ledger.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from marketkeeper.closing import Closing
from marketkeeper.settings import Settings, get_settings

if TYPE_CHECKING:
    import sqlalchemy as sa

    from marketkeeper.candle_cache import CandleCache
    from marketkeeper.influxdb import InfluxDBClient
    from marketkeeper.redis_client import RedisClient
    from marketkeeper.stores.base import CandleStore

__all__ = ["StoreConfig", "StoreSet"]


@dataclass(frozen=True)
class StoreConfig:
    """Where a deployment's stores are, before anything is opened.

    :param ledger_url: the ledger's SQLAlchemy URL (it may hold a password: never printed, see ``repr``).
    :param influxdb: builds a client of the candle InfluxDB; ``None``: candles go to the SQL store.
    :param redis: builds a client of the Redis cache; ``None``: no cache.
    :param origin: where the config came from, for messages (``environment``, ``Airflow connections``).
    :param absent: why an optional store is not configured, by store name, for ``health``.
    """

    ledger_url: str = field(repr=False)
    influxdb: Callable[[], InfluxDBClient] | None = field(default=None, repr=False)
    redis: Callable[[], RedisClient] | None = field(default=None, repr=False)
    origin: str = "environment"
    absent: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> StoreConfig:
        """The stores the environment names (``DATABASE_URL``, ``INFLUXDB_URL``, ``REDIS_URL``...)."""
        settings = settings or get_settings()

        def influxdb() -> InfluxDBClient:
            from marketkeeper.influxdb import InfluxDBClient

            return InfluxDBClient.from_settings(settings)

        redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else ""

        def redis() -> RedisClient:
            from marketkeeper.redis_client import RedisClient

            return RedisClient(redis_url)

        return cls(
            ledger_url=settings.ledger_url,
            influxdb=influxdb if settings.influxdb_url else None,
            redis=redis if redis_url else None,
            origin="environment",
            absent={
                "influxdb": "INFLUXDB_URL not set: candles go to the SQL store",
                "redis": "REDIS_URL not set: no cache",
            },
        )

    @property
    def ledger_target(self) -> str:
        """The ledger URL with its password masked, safe to print."""
        import sqlalchemy as sa

        return sa.engine.make_url(self.ledger_url).render_as_string(hide_password=True)

    @property
    def summary(self) -> str:
        """Which stores are in use, for a summary line (no secrets)."""
        candles = "InfluxDB" if self.influxdb is not None else "the SQL store"
        return f"ledger {self.ledger_target}; candles in {candles}; Redis {'on' if self.redis else 'off'}"


@dataclass
class StoreSet(Closing):
    """Open stores of one job; close them with :meth:`close` or ``with``.

    With the candles in InfluxDB the ledger's engine is created on first use of :attr:`ledger`, so a candle
    read never imports SQLAlchemy and a database driver (a third of the command's start-up).
    """

    candles: CandleStore
    cache: CandleCache | None
    ledger_url: str = field(repr=False)
    _engine: sa.Engine | None = field(default=None, repr=False)
    _engine_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ledger(self) -> sa.Engine:
        """The ledger's engine (:func:`~marketkeeper.ledger.create_ledger_engine` of the config's URL)."""
        with self._engine_lock:
            if self._engine is None:
                from marketkeeper.ledger import create_ledger_engine

                self._engine = create_ledger_engine(self.ledger_url)
            return self._engine

    @classmethod
    def open(cls, config: StoreConfig) -> StoreSet:
        """Open the stores ``config`` names; whatever was opened is closed again if a later one fails."""
        # Only the backends in use are imported: a command's start-up is mostly imports (redis-py, psycopg).
        engine: sa.Engine | None = None
        opened: list[Callable[[], None]] = []
        try:
            candles: CandleStore
            if config.influxdb is not None:
                from marketkeeper.stores.influxdb import InfluxDBCandleStore

                candles = InfluxDBCandleStore(config.influxdb(), owns_client=True)
            else:
                from marketkeeper.ledger import create_ledger_engine
                from marketkeeper.stores.sql import SQLCandleStore

                engine = create_ledger_engine(config.ledger_url)
                opened.append(engine.dispose)
                candles = SQLCandleStore(engine)
            opened.append(candles.close)
            cache: CandleCache | None = None
            if config.redis is not None:
                from marketkeeper.candle_cache import CandleCache

                cache = CandleCache(config.redis())
        except BaseException:
            for close in reversed(opened):
                close()
            raise
        return cls(candles=candles, cache=cache, ledger_url=config.ledger_url, _engine=engine)

    @property
    def description(self) -> str:
        """Which stores are in use, for a summary line (no secrets)."""
        ledger = self.ledger.url.render_as_string(hide_password=True)
        return f"ledger {ledger}; candles in {self.candles.name}; Redis {'on' if self.cache else 'off'}"

    def close(self) -> None:
        self.candles.close()
        if self.cache is not None:
            self.cache.client.close()
        if self._engine is not None:
            self._engine.dispose()
