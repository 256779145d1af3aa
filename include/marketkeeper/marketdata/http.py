"""The read-only HTTP API of the market data, for bots not written in Python: a FastAPI app over one
:class:`~marketkeeper.marketdata.provider.HistoricalDataProvider` (``marketkeeper serve`` runs it with uvicorn).

Every route but the OpenAPI page (``/docs``, ``/openapi.json``) needs ``Authorization: Bearer KEY`` with one of
the configured keys, unless anonymous access was enabled explicitly. Candles stream: CSV of a stored series is
the store's own export (:meth:`~marketkeeper.stores.base.CandleStore.write_csv`, formatted by PostgreSQL's
``COPY`` on the SQL store), anything else goes frame by frame through the provider, so memory stays bounded
whatever the range. Errors are JSON ``{"error": "..."}``: 400 for a bad parameter, 401 without a valid key, 404
for an unknown market or timeframe (with the ``known`` ones), 503 when a store is down.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from marketkeeper.errors import ConfigurationError, MarketkeeperError, StoreUnavailableError, first_line
from marketkeeper.marketdata.errors import UnknownMarketError, UnknownTimeframeError
from marketkeeper.marketdata.provider import HistoricalDataProvider
from marketkeeper.stores.base import CandleStoreUnavailableError
from marketkeeper.stores.csv_text import iso_open_times, value_texts
from marketkeeper.tiers import RESAMPLED_COLUMNS
from marketkeeper.timeframes import check_range

__all__ = ["create_app"]

log = logging.getLogger(__name__)

#: CSV in flight between the store's export thread and the response: 8 chunks of 256 KiB at most.
_PIPE_CHUNKS: Final = 8
_PIPE_CHUNK_BYTES: Final = 256 * 1024
_STALLED: Final = 300.0


# Module level: FastAPI reads the endpoints' (string) annotations against this module's names.
_BEARER: Final = HTTPBearer(auto_error=False, description="an API key of MARKETKEEPER_API_KEYS")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def _time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 query parameter; without an offset it is UTC (as on the command line)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _HTTPError(400, f"{name} {value!r} is not an ISO 8601 time (e.g. 2024-01-01T00:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _required(value: str | None, name: str) -> datetime:
    parsed = _time(value, name)
    if parsed is None:
        raise _HTTPError(400, f"query parameter {name} is required")
    return parsed


def _rows_csv(frame: Any, columns: Sequence[str]) -> str:
    if not len(frame):
        return ""
    texts = [iso_open_times(frame), *(value_texts(frame, name, "") for name in columns[1:])]
    return "\n".join(map(",".join, zip(*texts, strict=True))) + "\n"


def _rows_json(frame: Any, columns: Sequence[str]) -> str:
    template = "{{" + ", ".join(f'"{name}": {{}}' for name in columns) + "}}"
    times = ['"' + t + '"' for t in iso_open_times(frame)]
    return ", ".join(map(template.format, times, *(value_texts(frame, name, "null") for name in columns[1:])))


class _Pipe:
    """A file the store's CSV export writes into from a thread, read as an iterator of chunks; bounded, and
    closing the reader makes the writer's next write fail, so a dropped client stops the export."""

    def __init__(self) -> None:
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_PIPE_CHUNKS)
        self._closed = threading.Event()
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _PIPE_CHUNK_BYTES:
            self._put(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def _put(self, item: bytes | BaseException | None) -> None:
        # A reader that stopped taking chunks without closing (a dropped connection whose iterator was never
        # closed) frees the export, and its store connection, after _STALLED seconds.
        deadline = time.monotonic() + _STALLED
        while not self._closed.is_set() and time.monotonic() < deadline:
            try:
                self._chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise BrokenPipeError("the HTTP client went away")

    def run(self, export: Any) -> None:
        try:
            export(self)
            if self._buffer:
                self._put(bytes(self._buffer))
            self._put(None)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # handed to the reader, which raises it in the response
            with contextlib.suppress(BrokenPipeError):
                self._put(exc)

    def chunks(self) -> Iterator[bytes]:
        try:
            while True:
                item = self._chunks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._closed.set()


def create_app(
    provider: HistoricalDataProvider, *, api_keys: Sequence[str] = (), allow_anonymous: bool = False
) -> FastAPI:
    """The API over ``provider``.

    :param api_keys: the keys a request may present as ``Authorization: Bearer KEY``.
    :param allow_anonymous: serve requests without a key (off unless asked for).
    :raises ConfigurationError: no key and anonymous access not enabled: the API would refuse everyone.
    """
    keys = tuple(k for k in (k.strip() for k in api_keys) if k)
    if not keys and not allow_anonymous:
        raise ConfigurationError(
            "no API keys: set MARKETKEEPER_API_KEYS (comma-separated), or allow anonymous access explicitly "
            "(MARKETKEEPER_API_ALLOW_ANONYMOUS=1 or --allow-anonymous)"
        )
    app = FastAPI(
        title="marketkeeper market data",
        version="1",
        description="Candles from the best stored tier (never stale), coverage and trading signals. "
        "Send `Authorization: Bearer KEY`. Times are ISO 8601, UTC when no offset is given; ranges are "
        "`[start, end)` of open times.",
    )

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if credentials is None:
            if allow_anonymous:
                return
            raise _HTTPError(401, "missing API key: send Authorization: Bearer KEY")
        presented = credentials.credentials.encode()
        # Every key compared in constant time, so timing says nothing about how close a guess was.
        if not any([hmac.compare_digest(presented, key.encode()) for key in keys]):
            raise _HTTPError(401, "invalid API key")

    auth = [Depends(authorized)]

    @app.exception_handler(_HTTPError)
    async def _http_error(request: Request, exc: _HTTPError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": str(exc), **exc.extra}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=400)

    @app.exception_handler(MarketkeeperError)
    async def _domain_error(request: Request, exc: MarketkeeperError) -> JSONResponse:
        if isinstance(exc, UnknownMarketError | UnknownTimeframeError):
            return JSONResponse({"error": first_line(exc), "known": list(exc.known)}, status_code=404)
        if isinstance(exc, StoreUnavailableError | CandleStoreUnavailableError):
            return JSONResponse({"error": first_line(exc)}, status_code=503)
        if isinstance(exc, ValueError):  # a bad range, timeframe, signal field...
            return JSONResponse({"error": first_line(exc)}, status_code=400)
        log.error("market-data request failed: %s", first_line(exc))
        return JSONResponse({"error": first_line(exc)}, status_code=500)

    @app.get("/v1/markets", dependencies=auth, summary="The declared markets, their stored and servable timeframes")
    def markets() -> dict[str, object]:
        return {"markets": [m.as_dict() for m in provider.markets()]}

    @app.get("/v1/metadata", dependencies=auth, summary="A market's first/last candle and 30-day figures")
    def metadata(exchange: str, symbol: str) -> dict[str, object]:
        return provider.metadata(exchange, symbol).as_dict()

    @app.get(
        "/v1/candles",
        dependencies=auth,
        summary="Closed candles of [start, end), streamed as JSON or CSV",
        response_class=StreamingResponse,
    )
    def candles(
        exchange: str,
        symbol: str,
        timeframe: str,
        start: Annotated[str, Query(description="first open time, inclusive (ISO 8601)")],
        end: Annotated[str, Query(description="last open time, exclusive (ISO 8601)")],
        format: Literal["json", "csv"] = "json",
        complete_only: bool = False,
    ) -> StreamingResponse:
        begin, finish = _required(start, "start"), _required(end, "end")
        route = provider.route(exchange, symbol, timeframe)
        columns = list(RESAMPLED_COLUMNS) if route.resampled or route.derived else None
        if format == "csv" and not route.resampled and not complete_only:
            return _store_csv(provider, route.source, begin, finish)
        frames = provider.iter_candles(exchange, symbol, timeframe, begin, finish, complete_only=complete_only)
        first = next(frames, None)  # a store failure still becomes an error status, not a cut-off body
        if columns is None:
            columns = list(first.columns) if first is not None else list(_stored_columns())
        return StreamingResponse(
            _csv(first, frames, columns) if format == "csv" else _json(route, first, frames, columns),
            media_type="text/csv; charset=utf-8" if format == "csv" else "application/json",
        )

    @app.get("/v1/coverage", dependencies=auth, summary="Stored ranges, gaps, incomplete buckets of a series")
    def coverage(
        exchange: str, symbol: str, timeframe: str, start: str | None = None, end: str | None = None
    ) -> dict[str, object]:
        return provider.coverage(exchange, symbol, timeframe, _time(start, "start"), _time(end, "end")).as_dict()

    @app.get("/v1/signals", dependencies=auth, summary="Trading signals of a market in [start, end)")
    def signals(
        exchange: str,
        symbol: str,
        start: str,
        end: str,
        source: str | None = None,
        kind: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    ) -> dict[str, object]:
        found = provider.get_signals(
            exchange, symbol, _required(start, "start"), _required(end, "end"), source=source, kind=kind, limit=limit
        )
        return {"signals": [s.as_dict() for s in found]}

    @app.get("/v1/diagnostics", dependencies=auth, summary="Store reachability and query figures")
    def diagnostics() -> dict[str, object]:
        return provider.diagnostics().as_dict()

    @app.get("/metrics", dependencies=auth, summary="The query figures in Prometheus' text format")
    def metrics() -> Response:
        from marketkeeper.marketdata.prometheus import CONTENT_TYPE, render_metrics

        return Response(render_metrics(provider.metrics.snapshot()), media_type=CONTENT_TYPE)

    return app


def _stored_columns() -> tuple[str, ...]:
    from marketkeeper.candles import CANDLE_COLUMNS

    return CANDLE_COLUMNS


def _csv(first: Any, frames: Iterator[Any], columns: Sequence[str]) -> Iterator[str]:
    try:
        yield ",".join(columns) + "\n"
        if first is not None:
            yield _rows_csv(first, columns)
            for frame in frames:
                yield _rows_csv(frame, columns)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def _json(route: Any, first: Any, frames: Iterator[Any], columns: Sequence[str]) -> Iterator[str]:
    head = {
        "exchange": route.key.exchange,
        "symbol": route.key.symbol,
        "timeframe": str(route.key.timeframe),
        "route": route.kind,
    }
    try:
        yield json.dumps(head)[:-1] + ', "candles": ['
        if first is not None:
            separator = ""
            for frame in itertools.chain([first], frames):
                yield separator + _rows_json(frame, columns)
                separator = ", "
        yield "]}\n"
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def _store_csv(provider: HistoricalDataProvider, key: Any, start: datetime, end: datetime) -> StreamingResponse:
    """The store's own CSV export of ``key`` (a stored series), written by a thread into a bounded pipe."""
    store = provider.stores.candles
    start, end = check_range(start, end)  # a bad range fails before any byte is sent
    pipe = _Pipe()
    started = time.perf_counter()
    rows: list[int] = []
    thread = threading.Thread(
        target=pipe.run,
        args=(lambda out: rows.append(store.write_csv(key, start, end, out)),),
        name="candles-csv",
        daemon=True,
    )
    thread.start()
    chunks = pipe.chunks()
    try:
        first = next(chunks, b"")  # the header, or the store's error as an error status
    except Exception:
        provider.metrics.record(time.perf_counter() - started, 0, failed=True)
        raise

    def body() -> Iterator[bytes]:
        failed = True
        try:
            yield first
            yield from chunks
            failed = False
        finally:
            provider.metrics.record(time.perf_counter() - started, rows[0] if rows else 0, failed=failed)

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8")
