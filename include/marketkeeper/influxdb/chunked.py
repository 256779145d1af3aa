"""Chunked InfluxQL answers (``chunked=true``): one query streamed as the server produces it, a chunk at a time.

InfluxDB answers a chunked query with one JSON document per line, each carrying at most ``chunk_size`` rows
of a series. The rows are the bulk of every line and are plain numbers and ``null`` (a query without
``GROUP BY`` returns no tags), so each line is split in two: the small envelope (statement, series name,
columns, errors) goes through :func:`json.loads`, and the rows are handed back as CSV text for a vectorised
parser; no Python object is made per value. The CSV format (``Accept: application/csv``) is not used:
InfluxDB 1.x drops statement errors from it, so a missing database or a failed query would read as no rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from marketkeeper.influxdb.errors import InfluxDBError

__all__ = ["Chunk", "iter_chunks"]

_VALUES: Final = b'"values":['
#: Bytes read from the socket at a time.
_READ_SIZE: Final = 1 << 20


@dataclass(frozen=True)
class Chunk:
    """Rows of one series from one chunk of a chunked answer.

    :ivar name: the measurement.
    :ivar columns: the column names, ``time`` first.
    :ivar csv: the rows as CSV lines without a header: numbers as InfluxDB wrote them, ``null`` for no value.
    """

    name: str
    columns: list[str]
    csv: bytes


def _lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    pending = bytearray()
    for block in blocks:
        start = len(pending)
        pending += block
        end = pending.find(b"\n", start)
        if end < 0:
            continue
        last = pending.rfind(b"\n")
        yield from bytes(pending[: last + 1]).splitlines()
        del pending[: last + 1]
    if pending.strip():
        yield bytes(pending)


def _split(line: bytes) -> tuple[dict[str, Any], bytes]:
    """The envelope of one chunk (with ``"values": []``) and its rows as CSV lines."""
    at = line.find(_VALUES)
    if at < 0:
        return json.loads(line), b""
    # The rows end at the one "]]" of the line: after them come only "}", "]" and "partial" flags, and a
    # "values":[ or "]]" inside a JSON string (a hostile measurement name) would have its quote escaped.
    end = line.rfind(b"]]")
    if end < at:
        raise ValueError(f"a chunk of the answer is not InfluxDB's JSON: {line[:200]!r}")
    envelope = json.loads(line[:at] + b'"values":[]' + line[end + 2 :])
    rows = line[at + len(_VALUES) + 1 : end]
    return envelope, rows.replace(b"],[", b"\n") + b"\n"


def iter_chunks(
    raw: Any, fail: Callable[[str, Any], Exception], *, scrub: Callable[[str], str] = str
) -> Iterator[Chunk]:
    """The chunks of a chunked JSON answer, in order, read from the streamed body ``raw``; chunks without
    rows are skipped.

    :param raw: the undecoded body (``response.raw`` of a streamed ``requests`` answer).
    :param fail: the exception to raise for a statement error, from its message and statement id.
    :param scrub: hides secrets in text taken from the body.
    :raises InfluxDBError: the body is not InfluxDB's chunked JSON.
    """
    blocks = iter(lambda: raw.read(_READ_SIZE, decode_content=True), b"")
    for line in _lines(blocks):
        try:
            envelope, rows = _split(line)
            results = envelope.get("results") if isinstance(envelope, dict) else None
            if not isinstance(results, list):
                raise ValueError(f"a chunk of the answer is not InfluxDB's JSON: {line[:200]!r}")
        except ValueError as exc:
            raise InfluxDBError(scrub(f"InfluxQL answer unreadable: {exc}"), status=None, server_message="") from exc
        if "error" in envelope:
            raise fail(str(envelope["error"]), None)
        for result in results:
            if "error" in result:
                raise fail(str(result["error"]), result.get("statement_id"))
            series = result.get("series") or []
            if len(series) > 1 and rows:
                raise InfluxDBError(
                    "chunked rows of several series (GROUP BY) are not supported", status=None, server_message=""
                )
            for raw_series in series:
                if rows:
                    yield Chunk(name=raw_series.get("name", ""), columns=list(raw_series.get("columns", [])), csv=rows)
