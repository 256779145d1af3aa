"""Line protocol of candle writes and their posting: the InfluxDB store's write side.

The tags are the same on every line of a series, so they are escaped once by
:mod:`marketkeeper.influxdb.lineprotocol` and passed to a ``str.format`` template as an *argument*: the
template itself holds only the store's constant field keys, never a name from the input (a symbol such as
``A{x}`` would otherwise be read as a placeholder). A write formats a chunk at a time and posts it from a small
thread pool while the next one is formatted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final

from marketkeeper.influxdb import InfluxDBClient, escape_field_key, escape_measurement, escape_tag
from marketkeeper.influxdb.lineprotocol import float_texts
from marketkeeper.series import QUOTE_VOLUME, TRADE_COUNT, VALUE_COLUMNS

if TYPE_CHECKING:
    from marketkeeper.stores.prepared import PreparedCandles

__all__ = ["CHUNK_ROWS", "TAG_KEYS", "format_candle_lines", "post_candles", "post_candles_together"]

#: The tags of a candle point, in line-protocol (sorted) order.
TAG_KEYS: Final = ("exchange", "symbol", "timeframe")
#: Rows formatted per chunk: big enough that per-chunk overhead vanishes, small enough to overlap.
CHUNK_ROWS: Final = 50_000
#: Chunks in flight at once: one being posted while the next is formatted (and one spare).
_WRITERS: Final = 2


def _literal(text: str) -> str:
    """``text`` as literal template text: braces doubled, so ``str.format`` copies it unchanged."""
    return text.replace("{", "{{").replace("}", "}}")


def format_candle_lines(
    prepared: PreparedCandles, *, measurement: str = "candles", start: int = 0, stop: int | None = None
) -> list[str]:
    """Line protocol for rows ``[start, stop)`` of ``prepared``, byte-identical to
    :func:`~marketkeeper.influxdb.format_line` per candle (tags exchange/symbol/timeframe; fields open, high,
    low, close, volume, then quote_volume, trade_count, source_count and expected_count where present;
    nanosecond times).

    :raises ValueError: a name line protocol cannot carry (see :mod:`marketkeeper.influxdb.lineprotocol`).
    """
    import numpy as np

    if prepared.derived:
        return _with_derived_fields(prepared, measurement=measurement, start=start, stop=stop)
    key = prepared.key
    # The escaped measurement and tags are user text: they reach each line as the template's first
    # *argument* ("{}" copies it verbatim), never as template text.
    head = escape_measurement(measurement) + "".join(
        "," + escape_tag(tag) + "=" + escape_tag(value)
        for tag, value in sorted(zip(TAG_KEYS, (key.exchange, key.symbol, str(key.timeframe)), strict=True))
    )
    stop = len(prepared) if stop is None else min(stop, len(prepared))
    rows = slice(start, stop)
    # Every float as float_texts writes it (the shortest round-trip text, many at a time) and "{}" of an int
    # is str(int): exactly what format_line writes.
    columns: list[list[Any]] = [float_texts(prepared.values[name][rows]) for name in VALUE_COLUMNS]
    base = "{} " + ",".join(_literal(escape_field_key(name)) + "={}" for name in VALUE_COLUMNS)
    times = prepared.times_ns[rows].tolist()
    qv_present = prepared.quote_volume_present
    tc_present = prepared.trade_count_present
    has_qv = None if qv_present is None else qv_present[rows]
    has_tc = None if tc_present is None else tc_present[rows]

    def template(qv: bool, tc: bool) -> str:
        text = base
        if qv:
            text += "," + _literal(escape_field_key(QUOTE_VOLUME)) + "={}"
        if tc:
            text += "," + _literal(escape_field_key(TRADE_COUNT)) + "={}i"
        return text + " {}"

    extra: list[list[Any]] = []
    if prepared.quote_volume is not None:
        # An absent quote volume is NaN, which JSON cannot carry: 0 stands in for it (its text is never written).
        quote_volume = prepared.quote_volume[rows]
        extra.append(float_texts(np.where(np.isnan(quote_volume), 0.0, quote_volume)))
    if prepared.trade_count is not None:
        extra.append(prepared.trade_count[rows].tolist())
    all_qv = has_qv is not None and bool(has_qv.all())
    all_tc = has_tc is not None and bool(has_tc.all())
    none_qv = has_qv is None or not has_qv.any()
    none_tc = has_tc is None or not has_tc.any()
    if (all_qv or none_qv) and (all_tc or none_tc):
        # The common case: every row has the same fields, one template for the chunk.
        used = []
        if all_qv:
            used.append(extra[0])
        if all_tc:
            used.append(extra[-1])
        return list(map(template(all_qv, all_tc).format, repeat(head, stop - start), *columns, *used, times))

    # Rows differ in which optional fields they carry: format each pattern, put rows back in order.
    n = stop - start
    qv_mask = np.zeros(n, dtype=np.bool_) if has_qv is None else has_qv
    tc_mask = np.zeros(n, dtype=np.bool_) if has_tc is None else has_tc
    qv_values = extra[0] if prepared.quote_volume is not None else None
    tc_values = extra[-1] if prepared.trade_count is not None else None
    out = np.empty(n, dtype=object)
    for qv in (False, True):
        for tc in (False, True):
            index = np.flatnonzero((qv_mask == qv) & (tc_mask == tc))
            if len(index) == 0:
                continue
            picked = [[head] * len(index), *([column[i] for i in index] for column in columns)]
            if qv and qv_values is not None:
                picked.append([qv_values[i] for i in index])
            if tc and tc_values is not None:
                picked.append([tc_values[i] for i in index])
            picked.append([times[i] for i in index])
            out[index] = list(map(template(qv, tc).format, *picked))
    lines: list[str] = out.tolist()
    return lines


def _with_derived_fields(prepared: PreparedCandles, *, measurement: str, start: int, stop: int | None) -> list[str]:
    """:func:`format_candle_lines` of a derived tier's write: the lines without the counts, each count field
    inserted before the timestamp. Python per row, but only tier writes take it (a year of 5m is 105k rows)."""
    lines = format_candle_lines(replace(prepared, derived={}), measurement=measurement, start=start, stop=stop)
    rows = slice(start, start + len(lines))
    suffixes = [""] * len(lines)
    for name, counts in prepared.derived.items():
        field = "," + escape_field_key(name) + "="
        for i, count in enumerate(counts[rows].tolist()):
            if count >= 0:
                suffixes[i] += f"{field}{count}i"
    out = []
    for line, suffix in zip(lines, suffixes, strict=True):
        cut = line.rindex(" ")  # the timestamp follows the last space; escaped spaces come before it
        out.append(line[:cut] + suffix + line[cut:])
    return out


def post_candles(client: InfluxDBClient, prepared: PreparedCandles, *, measurement: str) -> None:
    """Write ``prepared`` as points of ``measurement``: one request up to :data:`CHUNK_ROWS` candles, else
    chunk after chunk, each formatted while the last one is posted."""
    chunks = range(0, len(prepared), CHUNK_ROWS)
    if len(chunks) == 1:
        client.write_lines(format_candle_lines(prepared, measurement=measurement))
        return
    # Formatting is CPU work under the GIL; posting waits on the server with the GIL released, so the
    # next chunk is formatted while the last one is in flight.
    pending: deque[Future[int]] = deque()
    with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="influx-candles") as pool:
        try:
            for begin in chunks:
                lines = format_candle_lines(prepared, measurement=measurement, start=begin, stop=begin + CHUNK_ROWS)
                while len(pending) >= _WRITERS:
                    pending.popleft().result()
                pending.append(pool.submit(client.write_lines, lines))
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def post_candles_together(client: InfluxDBClient, prepared: Sequence[PreparedCandles], *, measurement: str) -> None:
    """Write the candles of several series in one request (the caller keeps them within :data:`CHUNK_ROWS`
    lines; the client still splits a request longer than its ``batch_size``)."""
    lines: list[str] = []
    for one in prepared:
        lines += format_candle_lines(one, measurement=measurement)
    client.write_lines(lines)
