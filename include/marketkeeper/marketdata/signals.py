"""Trading signals: what a strategy or bot concluded about a market at a time (kind, value, confidence).

Stored in InfluxDB's measurement ``signals`` (tags ``exchange``, ``symbol``, ``source``; fields ``kind``,
``value``, ``confidence``) when InfluxDB is configured, else in the ledger's ``trading_signals`` table. A
signal is identified by its market, source and time: storing it again replaces it, in both stores (an
InfluxDB point with the same tags and time is overwritten; the table upserts on its unique key). Names go
through the tested line-protocol escaping and InfluxQL quoting, values through bound parameters.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import pandas as pd

from marketkeeper.influxdb import escape_tag, format_line, quote_identifier
from marketkeeper.marketdata.errors import SignalValidationError
from marketkeeper.repositories.errors import ValidationError
from marketkeeper.timeframes import check_range, ensure_utc, to_ns

if TYPE_CHECKING:
    import sqlalchemy as sa

    from marketkeeper.influxdb import InfluxDBClient
    from marketkeeper.store_set import StoreSet

__all__ = ["MAX_SIGNALS", "Signal", "SignalStore", "signal_store"]

MEASUREMENT: Final = "signals"
#: The most signals one read returns.
MAX_SIGNALS: Final = 10_000
# The ledger's column sizes, enforced for both stores so a signal fits wherever it goes.
_LIMITS: Final = {"exchange": 32, "symbol": 32, "source": 64, "kind": 32}


def _name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SignalValidationError(f"signal {field} must be a non-empty string, got {value!r}")
    if len(value) > _LIMITS[field]:
        raise SignalValidationError(f"signal {field} {value!r} is longer than {_LIMITS[field]} characters")
    if any(ord(c) < 32 for c in value):
        raise SignalValidationError(f"signal {field} {value!r} contains a control character")
    if field != "kind":  # tags: refuse what line protocol cannot carry unchanged
        try:
            escape_tag(value)
        except ValueError as exc:
            raise SignalValidationError(f"signal {field}: {exc}") from exc
    return value


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignalValidationError(f"signal {field} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise SignalValidationError(f"signal {field} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class Signal:
    """One validated signal; build it with :meth:`of`. ``time`` is aware UTC with microseconds at most."""

    exchange: str
    symbol: str
    source: str
    kind: str
    value: float
    confidence: float
    time: datetime

    @classmethod
    def of(
        cls,
        exchange: str,
        symbol: str,
        strategy_or_bot: str,
        kind: str,
        value: float,
        confidence: float,
        time: datetime,
    ) -> Signal:
        """Validate a signal.

        :raises SignalValidationError: naming the field: an empty, too long or unwritable name, a value that
            is not a finite number, a confidence outside 0..1, a naive or out-of-span time, nanoseconds.
        """
        confidence = _number("confidence", confidence)
        if not 0.0 <= confidence <= 1.0:
            raise SignalValidationError(f"signal confidence must be between 0 and 1, got {confidence!r}")
        try:
            at = ensure_utc(time, "signal time")
            check_range(at, at)
        except (TypeError, ValueError) as exc:
            raise SignalValidationError(str(exc)) from exc
        if getattr(time, "nanosecond", 0):
            raise SignalValidationError("signal time has nanoseconds; both stores keep microseconds")
        return cls(
            _name("exchange", exchange),
            _name("symbol", symbol),
            _name("source", strategy_or_bot),
            _name("kind", kind),
            _number("value", value),
            confidence,
            at,
        )

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "time": self.time.isoformat()}


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SIGNALS:
        raise SignalValidationError(f"limit must be an integer from 1 to {MAX_SIGNALS}, got {limit!r}")
    return limit


class SignalStore(abc.ABC):
    """Where signals are kept: one implementation per backend."""

    @abc.abstractmethod
    def write(self, signal: Signal) -> None:
        """Store ``signal``, replacing one of the same market, source and time."""

    def read(
        self,
        exchange: str,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        source: str | None = None,
        kind: str | None = None,
        limit: int = MAX_SIGNALS,
    ) -> list[Signal]:
        """The signals of a market with ``start <= time < end``, oldest first, at most ``limit``."""
        start, end = check_range(start, end)
        return self._read(exchange, symbol, start, end, source, kind, _check_limit(limit))

    @abc.abstractmethod
    def _read(
        self,
        exchange: str,
        symbol: str,
        start: datetime,
        end: datetime,
        source: str | None,
        kind: str | None,
        limit: int,
    ) -> list[Signal]: ...


class InfluxDBSignalStore(SignalStore):
    """Signals in the measurement ``signals`` of the candle InfluxDB."""

    def __init__(self, client: InfluxDBClient) -> None:
        self._client = client

    def write(self, signal: Signal) -> None:
        line = format_line(
            MEASUREMENT,
            {"exchange": signal.exchange, "symbol": signal.symbol, "source": signal.source},
            {"kind": signal.kind, "value": signal.value, "confidence": signal.confidence},
            to_ns(signal.time),
        )
        self._client.write_lines([line])

    def _read(
        self,
        exchange: str,
        symbol: str,
        start: datetime,
        end: datetime,
        source: str | None,
        kind: str | None,
        limit: int,
    ) -> list[Signal]:
        q = quote_identifier
        where = [f"{q('exchange')} = $exchange", f"{q('symbol')} = $symbol", "time >= $start", "time < $end"]
        params: dict[str, object] = {"exchange": exchange, "symbol": symbol, "start": to_ns(start), "end": to_ns(end)}
        if source is not None:
            where.append(f"{q('source')} = $source")
            params["source"] = source
        if kind is not None:
            where.append(f"{q('kind')} = $kind")
            params["kind"] = kind
        columns = ", ".join(q(name) for name in ("source", "kind", "value", "confidence"))
        # Identifiers quoted, every value a bound parameter: no input reaches the query text.
        text = f"SELECT {columns} FROM {q(MEASUREMENT)} WHERE {' AND '.join(where)} ORDER BY time ASC LIMIT $limit"  # noqa: S608
        params["limit"] = limit
        found: list[Signal] = []
        for series in self._client.query(text, params=params, epoch="ns"):
            index = {name: i for i, name in enumerate(series.columns)}
            for row in series.values:
                found.append(
                    Signal(
                        exchange,
                        symbol,
                        str(row[index["source"]]),
                        str(row[index["kind"]]),
                        float(row[index["value"]]),
                        float(row[index["confidence"]]),
                        pd.Timestamp(int(row[index["time"]]), tz="UTC").to_pydatetime(),
                    )
                )
        return found


class SQLSignalStore(SignalStore):
    """Signals in the ledger's ``trading_signals`` table (through the ledger's ``SignalRepository``)."""

    def __init__(self, ledger: sa.Engine) -> None:
        self._ledger = ledger

    def write(self, signal: Signal) -> None:
        from marketkeeper.repositories import unit_of_work

        try:
            with unit_of_work(self._ledger) as repos:
                repos.signals.upsert(**asdict(signal))
        except ValidationError as exc:
            raise SignalValidationError(str(exc)) from exc

    def _read(
        self,
        exchange: str,
        symbol: str,
        start: datetime,
        end: datetime,
        source: str | None,
        kind: str | None,
        limit: int,
    ) -> list[Signal]:
        from marketkeeper.repositories import unit_of_work

        with unit_of_work(self._ledger) as repos:
            rows = repos.signals.between(exchange, symbol, start, end, source=source, kind=kind, limit=limit)
            return [Signal(r.exchange, r.symbol, r.source, r.kind, r.value, r.confidence, r.time) for r in rows]


def signal_store(stores: StoreSet) -> SignalStore:
    """InfluxDB's ``signals`` when the candles are in InfluxDB, else the ledger's table."""
    from marketkeeper.stores.influxdb import InfluxDBCandleStore

    if isinstance(stores.candles, InfluxDBCandleStore):
        return InfluxDBSignalStore(stores.candles.client)
    return SQLSignalStore(stores.ledger)
