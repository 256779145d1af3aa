"""Chunked InfluxQL answers (``chunked=true``): one query streamed as the server produces it, a chunk at a time.

InfluxDB answers a chunked query with one JSON document per line, each carrying at most ``chunk_size`` rows
of a series. The rows are the bulk of every line and are plain numbers and ``null`` (a query without
``GROUP BY`` returns no tags), so each line is split in two: the small envelope (statement, series name,
columns, errors) goes through :func:`json.loads`, and the rows are handed back as text, CSV for a vectorised
parser (:attr:`Chunk.csv`) or as they came for a rewrite of their own; no Python object is made per value.
The CSV format (``Accept: application/csv``) is not used: InfluxDB 1.x drops statement errors from it, so a
missing database or a failed query would read as no rows.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from marketkeeper.influxdb.errors import InfluxDBError

__all__ = ["Chunk", "iter_chunks"]

_VALUES: Final = b'"values":['
#: Bytes read from the socket at a time.
_READ_SIZE: Final = 1 << 20
#: Blocks read ahead of the parser at most (so at most this many MB wait in memory).
_READ_AHEAD: Final = 16


@dataclass(frozen=True)
class Chunk:
    """Rows of one series from one chunk of a chunked answer.

    :ivar name: the measurement.
    :ivar columns: the column names, ``time`` first.
    :ivar values: the rows as InfluxDB wrote them inside ``"values":[ .. ]``, without the outer brackets:
        ``1704067200000000000,42000.5,null],[1704067260000000000,...``.
    """

    name: str
    columns: list[str]
    values: bytes

    @property
    def csv(self) -> bytes:
        """The rows as CSV lines without a header: numbers as InfluxDB wrote them, ``null`` for no value."""
        return self.values.replace(b"],[", b"\n") + b"\n" if self.values else b""


def _read_ahead(read: Callable[[], bytes], depth: int = _READ_AHEAD) -> Iterator[bytes]:
    """The blocks of ``read()`` up to its first empty one, read by a thread of their own up to ``depth`` blocks
    ahead, so the server keeps streaming while the caller works on what came (the socket read releases the
    GIL). An error of ``read`` is raised here, in order. When the caller stops early the thread stops at its
    next block (or when the answer is closed under it).
    """
    blocks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        item: bytes | BaseException = b""
        while not stop.is_set():
            try:
                item = read()
            except BaseException as exc:  # handed to the reader, which raises it
                item = exc
            while not stop.is_set():
                try:
                    blocks.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    threading.Thread(target=pump, name="influxdb-read-ahead", daemon=True).start()
    try:
        while True:
            item = blocks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()


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
    """The envelope of one chunk (with ``"values": []``) and its rows' text (see :attr:`Chunk.values`)."""
    at = line.find(_VALUES)
    if at < 0:
        return json.loads(line), b""
    # The rows end at the one "]]" of the line: after them come only "}", "]" and "partial" flags, and a
    # "values":[ or "]]" inside a JSON string (a hostile measurement name) would have its quote escaped.
    end = line.rfind(b"]]")
    if end < at:
        raise ValueError(f"a chunk of the answer is not InfluxDB's JSON: {line[:200]!r}")
    envelope = json.loads(line[:at] + b'"values":[]' + line[end + 2 :])
    return envelope, line[at + len(_VALUES) + 1 : end]


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
    blocks = _read_ahead(lambda: raw.read(_READ_SIZE, decode_content=True))
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
                    name, columns = raw_series.get("name", ""), list(raw_series.get("columns", []))
                    yield Chunk(name=name, columns=columns, values=rows)
