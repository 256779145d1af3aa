"""Candles from any ccxt exchange's ``fetch_ohlcv``, paginated by ``since``, retried on network trouble.

Pass ONE exchange instance per task (see :func:`make_exchange`) so ccxt's rate limiter sees every call.
"""

from __future__ import annotations

import difflib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, TypeVar

import ccxt
import numpy as np

from marketkeeper.candles import SeriesKey, candle_frame
from marketkeeper.sources.base import (
    CandleBatch,
    CandleSource,
    Reject,
    SourceError,
    SourceUnavailableError,
    UnknownExchangeError,
    UnknownSymbolError,
    UnsupportedTimeframeError,
)
from marketkeeper.timeframes import EPOCH, check_range, to_ms

__all__ = ["DEFAULT_LIMIT", "CcxtSource", "ExchangeLike", "make_exchange", "per_call_limit"]

log = logging.getLogger(__name__)

#: Candles per call when the exchange does not declare its own limit (ccxt's ``features``); most allow more.
DEFAULT_LIMIT: Final = 500
_T = TypeVar("_T")


class ExchangeLike(Protocol):
    """What :class:`CcxtSource` uses of a ``ccxt.Exchange`` (test fakes implement just this)."""

    @property
    def id(self) -> str: ...

    @property
    def timeframes(self) -> Mapping[str, Any] | None: ...

    def fetch_ohlcv(
        self, symbol: str, timeframe: str = ..., since: int | None = ..., limit: int | None = ...
    ) -> list[list[Any]]: ...

    def milliseconds(self) -> int: ...

    def load_markets(self, reload: bool = ...) -> Mapping[str, Any]: ...


def make_exchange(exchange_id: str, **config: Any) -> Any:
    """Build the ccxt exchange ``exchange_id`` with its rate limiter on.

    :param exchange_id: a ccxt id such as ``binance``.
    :param config: extra ccxt options (``apiKey``, ``options``, ``timeout`` ...); they win over the defaults.
    :raises UnknownExchangeError: when ccxt has no such exchange, with the closest ids.
    """
    if exchange_id not in ccxt.exchanges:
        close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see ccxt.exchanges for the valid ids"
        raise UnknownExchangeError(f"unknown exchange id {exchange_id!r}; {hint}", source="ccxt")
    return getattr(ccxt, exchange_id)({"enableRateLimit": True, **config})


def per_call_limit(exchange: Any, market: Mapping[str, Any]) -> int:
    """The most candles one ``fetch_ohlcv`` call returns for ``market``, from ccxt's ``features`` table."""
    node: Any = (getattr(exchange, "features", None) or {}).get(market.get("type") or "spot")
    # Derivatives are split by settlement: features["swap"]["linear"]["fetchOHLCV"].
    if isinstance(node, Mapping) and "fetchOHLCV" not in node:
        node = node.get("inverse" if market.get("inverse") else "linear")
    ohlcv = node.get("fetchOHLCV") if isinstance(node, Mapping) else None
    limit = ohlcv.get("limit") if isinstance(ohlcv, Mapping) else None
    if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 0:
        return int(limit)
    return DEFAULT_LIMIT


class CcxtSource(CandleSource):
    """Closed candles from a ccxt exchange, one ``fetch_ohlcv`` page per batch.

    :param exchange: the shared ``ccxt.Exchange`` (or anything :class:`ExchangeLike`).
    :param limit: candles per call; default: the exchange's declared maximum, else :data:`DEFAULT_LIMIT`.
    :param max_retries: retries of a call failing with ``NetworkError``/``RateLimitExceeded``.
    :param backoff: the first retry's delay in seconds; each further retry doubles it, up to ``max_backoff``.
    :param max_backoff: the longest delay between two attempts, in seconds.
    :param sleep: how to wait (tests pass a recorder).
    """

    def __init__(
        self,
        exchange: ExchangeLike,
        *,
        limit: int | None = None,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.exchange = exchange
        self.limit = limit
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    @property
    def name(self) -> str:
        return f"ccxt:{self.exchange.id}"

    def fetch_batches(self, key: SeriesKey, start: datetime, end: datetime) -> Iterator[CandleBatch]:
        start, end = check_range(start, end)
        context: dict[str, Any] = {"source": self.name, "key": key, "start": start, "end": end}
        if key.exchange != self.exchange.id:
            raise SourceError(f"series is on {key.exchange!r} but this source reads {self.exchange.id!r}", **context)
        tf = key.timeframe
        supported = getattr(self.exchange, "timeframes", None) or {}
        if tf.value not in supported:
            listed = ", ".join(supported) or "none (no fetchOHLCV)"
            raise UnsupportedTimeframeError(f"{self.exchange.id} has no {tf} candles; it supports {listed}", **context)
        markets = self._call("load_markets", self.exchange.load_markets, context)
        if key.symbol not in markets:
            close = difflib.get_close_matches(key.symbol, list(markets), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownSymbolError(f"{self.exchange.id} does not list symbol {key.symbol!r}{hint}", **context)
        limit = self.limit or per_call_limit(self.exchange, markets[key.symbol])

        # The candle containing the exchange's "now" is still open: everything before its open time is closed.
        now = EPOCH + timedelta(milliseconds=self.exchange.milliseconds())
        upper_ms = min(to_ms(end), to_ms(tf.floor(now)))
        start_ms = to_ms(start)
        since = start_ms
        last_ts: int | None = None
        while since < upper_ms:
            rows = self._call(
                f"fetch_ohlcv since {since}",
                functools.partial(self.exchange.fetch_ohlcv, key.symbol, tf.value, since=since, limit=limit),
                context,
            )
            if not rows:
                break
            ts, values, rejects = self._parse_page(rows)
            if not len(ts):
                if rejects:
                    yield CandleBatch(candle_frame(ts, values.T, unit="ms"), tuple(rejects))
                break
            page_last = int(ts.max())
            if page_last < since or (last_ts is not None and page_last <= last_ts):
                log.warning(
                    "%s %s: page since %d made no progress (newest %d); stopping",
                    self.name,
                    key,
                    since,
                    page_last,
                )
                break
            # Pages may overlap when an exchange returns the candle containing ``since``: keep each time once.
            keep = (ts >= start_ms) & (ts < upper_ms)
            if last_ts is not None:
                keep &= ts > last_ts
            last_ts = page_last
            since = page_last + 1
            if keep.any() or rejects:
                yield CandleBatch(candle_frame(ts[keep], values[keep].T, unit="ms"), tuple(rejects))
            if to_ms(tf.next_open(EPOCH + timedelta(milliseconds=page_last))) >= upper_ms:
                break  # the page reached the last closed candle wanted: no need to ask for an empty page

    def _parse_page(self, rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Reject]]:
        """Split a page into open times (ms), OHLCV values and rows that are not ``[ts, o, h, l, c, v]``."""
        try:
            table = np.array([row[:6] for row in rows], dtype=np.float64)
            if table.ndim == 2 and table.shape[1] == 6 and np.isfinite(table[:, 0]).all():
                return table[:, 0].astype(np.int64), table[:, 1:6], []
        except (TypeError, ValueError, IndexError):
            pass  # some row is malformed: find which one(s) below and reject them by name
        good: list[list[float]] = []
        rejects: list[Reject] = []
        for index, row in enumerate(rows):
            try:
                if len(row) < 6:
                    raise ValueError(f"expected 6 fields [ts, o, h, l, c, v], got {len(row)}")
                parsed = [np.nan if v is None else float(v) for v in row[:6]]
                if not np.isfinite(parsed[0]):
                    raise ValueError("open time is not a number")
                good.append(parsed)
            except (TypeError, ValueError) as exc:
                rejects.append(Reject(source=self.name, reason=str(exc), raw=repr(row), line=index))
        table = np.array(good, dtype=np.float64).reshape(-1, 6)
        return table[:, 0].astype(np.int64), table[:, 1:6], rejects

    def _call(self, what: str, fn: Callable[[], _T], context: dict[str, Any]) -> _T:
        attempt = 0
        while True:
            try:
                return fn()
            except ccxt.BadSymbol as exc:
                raise UnknownSymbolError(
                    f"{self.exchange.id} rejected symbol {context['key'].symbol!r}: {exc}", **context
                ) from exc
            except ccxt.NetworkError as exc:  # RateLimitExceeded and DDoSProtection are NetworkErrors too
                if attempt >= self.max_retries:
                    raise SourceUnavailableError(
                        f"{what} failed after {attempt + 1} attempt(s): {type(exc).__name__}: {exc}",
                        **context,
                    ) from exc
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                if isinstance(exc, ccxt.RateLimitExceeded):
                    # Never retry sooner than the exchange's own spacing between calls.
                    delay = max(delay, float(getattr(self.exchange, "rateLimit", 0) or 0) / 1000)
                log.warning(
                    "%s: %s failed (%s: %s); retry %d/%d in %.1fs",
                    self.name, what, type(exc).__name__, exc, attempt + 1, self.max_retries, delay,
                )  # fmt: skip
                self._sleep(delay)
                attempt += 1
            except ccxt.BaseError as exc:
                raise SourceError(f"{what} failed: {type(exc).__name__}: {exc}", **context) from exc
