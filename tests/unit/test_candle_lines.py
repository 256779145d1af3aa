"""The InfluxDB candle store's fast line formatting writes exactly what ``format_line`` writes, and the
binary COPY payload of the SQL store decodes to the rows it was built from."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.influxdb import format_line
from marketkeeper.stores import CandleStoreError
from marketkeeper.stores.base import prepare_candles
from marketkeeper.stores.influxdb import format_candle_lines
from marketkeeper.stores.sql_copy import copy_payload

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOSTILE = [
    'BTC "q"/USDT',
    "a,b=c d",
    "back\\slash",
    "💰🚀/€",
    "tab\there",
    "x=y",
    "trailing ",
    # Braces and percent signs are plain text, never template syntax.
    "A{{B",
    "A{x}",
    "{0}{}{!r}",
    "}{",
    "%d %s %%",
]
FLOATS = [0.1 + 0.2, 1 / 3, 1e-8, 1e16, 1.5e-5, 123456789.123, -0.0, 5e-324, 1.2345678901234567e300, 42.0]


def frame(n: int, *, optional: str = "both") -> pd.DataFrame:
    values = np.resize(np.array(FLOATS), n)
    df = pd.DataFrame(
        {
            "open_time": pd.date_range(T0, periods=n, freq="1min", tz="UTC"),
            "open": values,
            "high": values[::-1].copy(),
            "low": values * 3,
            "close": values / 7,
            "volume": np.abs(values),
        }
    )
    if optional in ("both", "mixed"):
        df["quote_volume"] = values * 11
        df["trade_count"] = pd.array(np.arange(n) * 7919, dtype="Int64")
    if optional == "mixed":
        df.loc[df.index % 3 == 0, "quote_volume"] = np.nan
        df.loc[df.index % 2 == 0, "trade_count"] = pd.NA
    return df


def reference_lines(key: SeriesKey, df: pd.DataFrame, measurement: str) -> list[str]:
    lines = []
    tags = {"exchange": key.exchange, "symbol": key.symbol, "timeframe": str(key.timeframe)}
    for row in df.itertuples(index=False):
        fields: dict[str, float | int | None] = {
            name: float(getattr(row, name)) for name in ("open", "high", "low", "close", "volume")
        }
        qv = getattr(row, "quote_volume", None)
        tc = getattr(row, "trade_count", None)
        fields["quote_volume"] = None if qv is None or np.isnan(qv) else float(qv)
        fields["trade_count"] = None if tc is None or tc is pd.NA else int(tc)
        lines.append(format_line(measurement, tags, fields, row.open_time.value))
    return lines


@pytest.mark.parametrize("symbol", HOSTILE)
@pytest.mark.parametrize("optional", ["none", "both", "mixed"])
def test_fast_lines_are_byte_identical_to_format_line(symbol: str, optional: str) -> None:
    key = SeriesKey.of("ex,change ={x}", symbol, "1m")
    df = frame(25, optional=optional)
    prepared = prepare_candles(key, df, store="test")

    assert format_candle_lines(prepared, measurement="my {candles}") == reference_lines(key, df, "my {candles}")


def test_fast_lines_by_chunk_concatenate_to_the_whole() -> None:
    key = SeriesKey.of("binance", "BTC/USDT", "1m")
    prepared = prepare_candles(key, frame(10, optional="mixed"), store="test")
    whole = format_candle_lines(prepared)

    assert format_candle_lines(prepared, start=0, stop=4) + format_candle_lines(prepared, start=4, stop=99) == whole


def test_names_line_protocol_cannot_carry_are_refused() -> None:
    key = SeriesKey.of("binance", "ends with backslash\\", "1m")
    prepared = prepare_candles(key, frame(2), store="test")
    with pytest.raises(ValueError, match="backslash"):
        format_candle_lines(prepared)


def test_duplicate_open_times_are_refused_naming_the_time() -> None:
    df = pd.concat([frame(3), frame(3).iloc[[1]]])
    with pytest.raises(CandleStoreError, match="2024-03-01T00:01:00"):
        prepare_candles(SeriesKey.of("binance", "BTC/USDT", "1m"), df, store="test")


def _decode_copy(payload: bytes) -> list[tuple[object, ...]]:
    assert payload.startswith(b"PGCOPY\n\xff\r\n\x00")
    at, rows = 19, []
    while True:
        (count,) = struct.unpack_from(">h", payload, at)
        at += 2
        if count == -1:
            assert at == len(payload)
            return rows
        row: list[object] = []
        for index in range(count):
            (length,) = struct.unpack_from(">i", payload, at)
            at += 4
            if length == -1:
                row.append(None)
                continue
            fmt = {0: ">q", 7: ">?", 8: ">q", 9: ">q", 10: ">q"}.get(index, ">d")
            row.append(struct.unpack_from(fmt, payload, at)[0])
            at += length
        rows.append(tuple(row))


def test_binary_copy_payload_holds_every_row_in_order_marking_absent_values() -> None:
    df = frame(12, optional="mixed")
    prepared = prepare_candles(SeriesKey.of("binance", "BTC/USDT", "1m"), df, store="test")

    rows = _decode_copy(bytes(copy_payload(prepared)))

    pg_epoch_us = 946_684_800_000_000
    expected = []
    for row in df.itertuples(index=False):
        has_tc = row.trade_count is not pd.NA
        tc = int(row.trade_count) if has_tc else 0
        us = row.open_time.value // 1000 - pg_epoch_us
        # source_count, expected_count: -1 marks absent (a fetched candle has neither).
        expected.append((us, row.open, row.high, row.low, row.close, row.volume, row.quote_volume, has_tc, tc, -1, -1))
    # NaN != NaN: compare the absent quote volumes apart.
    assert [np.isnan(r[6]) for r in rows] == [np.isnan(e[6]) for e in expected]
    strip = lambda r: r[:6] + r[7:]  # noqa: E731
    assert [strip(r) for r in rows] == [strip(e) for e in expected]
    assert [r[6] for r in rows if not np.isnan(r[6])] == [e[6] for e in expected if not np.isnan(e[6])]
