"""Test doubles for what is NOT a server here: a ccxt exchange (no live exchange is reachable from tests).

``FakeExchange`` answers ``fetch_ohlcv``, ``milliseconds``, ``timeframes``, ``markets``/``load_markets`` and
``features`` like a ccxt exchange, records every call, and raises queued ccxt errors on demand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import ccxt

from marketkeeper.timeframes import Timeframe, to_ms

DEFAULT_TIMEFRAMES = {tf: tf for tf in ("1m", "5m", "15m", "1h", "4h", "1d", "1w", "1M")}


def make_rows(start: datetime, timeframe: str, count: int, *, price: float = 100.0) -> list[list[float]]:
    """``count`` consecutive ccxt OHLCV rows ``[ms, o, h, l, c, v]`` from ``start``, open == previous close."""
    tf = Timeframe.parse(timeframe)
    rows: list[list[float]] = []
    opened = tf.floor(start)
    for i in range(count):
        o, c = price + i, price + i + 1
        rows.append([float(to_ms(opened)), o, c + 0.5, o - 0.5, c, 10.0 + i])
        opened = tf.next_open(opened)
    return rows


class FakeExchange:
    """A ccxt-like exchange serving fixed candles.

    :param candles: rows per ``(symbol, timeframe)``; ``fetch_ohlcv`` serves those with ``ts >= since`` (like
        Binance, including the still-open candle if the rows contain it), at most ``max_limit`` per call.
    :param now: the exchange clock.
    :param max_limit: the exchange's own per-call cap, also declared in ``features`` unless ``features`` is given.
    :param failures: exceptions ``fetch_ohlcv`` raises, one per call, before answering normally.
    :param overlap: serve the candle containing ``since`` too (exchanges that round ``since`` down).
    """

    rateLimit = 50

    def __init__(
        self,
        candles: Mapping[tuple[str, str], Sequence[Sequence[Any]]] | None = None,
        *,
        now: datetime,
        id: str = "fakex",
        max_limit: int = 1000,
        timeframes: Mapping[str, str] | None = None,
        symbols: Iterable[str] | None = None,
        features: dict[str, Any] | None = None,
        failures: Iterable[BaseException] = (),
        load_markets_failures: Iterable[BaseException] = (),
        overlap: bool = False,
    ) -> None:
        self.id = id
        self.candles = {
            key: sorted((list(r) for r in rows), key=lambda r: r[0]) for key, rows in (candles or {}).items()
        }
        self.now_ms = to_ms(now)
        self.max_limit = max_limit
        self.timeframes = dict(DEFAULT_TIMEFRAMES if timeframes is None else timeframes)
        names = set(symbols) if symbols is not None else {symbol for symbol, _ in self.candles}
        self.markets: dict[str, dict[str, Any]] | None = None
        self._market_table = {name: {"symbol": name, "type": "spot", "spot": True} for name in sorted(names)}
        self.features = features if features is not None else {"spot": {"fetchOHLCV": {"limit": max_limit}}}
        self.failures = list(failures)
        self.load_markets_failures = list(load_markets_failures)
        self.overlap = overlap
        #: Every fetch_ohlcv call as (symbol, timeframe, since, limit).
        self.calls: list[tuple[str, str, int | None, int | None]] = []
        self.load_markets_calls = 0

    def milliseconds(self) -> int:
        return self.now_ms

    def load_markets(self, reload: bool = False, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self.load_markets_calls += 1
        if self.load_markets_failures:
            raise self.load_markets_failures.pop(0)
        if self.markets is None or reload:
            self.markets = dict(self._market_table)
        return self.markets

    def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[list[Any]]:
        self.calls.append((symbol, timeframe, since, limit))
        if self.failures:
            raise self.failures.pop(0)
        if symbol not in self._market_table:
            raise ccxt.BadSymbol(f"{self.id} does not have market symbol {symbol}")
        if timeframe not in self.timeframes:
            raise ccxt.BadRequest(f"{self.id} has no timeframe {timeframe}")
        rows = self.candles.get((symbol, timeframe), [])
        start = since if since is not None else 0
        if self.overlap and since is not None:
            start = Timeframe.parse(timeframe).floor_ns([since * 1_000_000])[0] // 1_000_000
        served = [list(r) for r in rows if start <= r[0] <= self.now_ms]
        return served[: min(limit or self.max_limit, self.max_limit)]
