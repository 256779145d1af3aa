"""``marketkeeper health`` and ``marketkeeper candles``: check the stores; read a series back."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated

import typer

from marketkeeper.cli.common import (
    CandleFormat,
    EndOpt,
    ExchangeOpt,
    StartOpt,
    SymbolOpt,
    TimeframeOpt,
    fail,
    parse_time,
    series_key,
    store_config,
    user_errors,
)


def health(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object, not a table.")] = False,
) -> None:
    """Check every configured store: round-trip latency and server version.

    Exits 1 naming each configured store that is down; stores not configured are reported, not failed.
    """
    from marketkeeper.health import check_stores

    config = store_config()
    with user_errors():
        results = check_stores(config)
    down = [r.store for r in results if r.configured and not r.ok]
    if as_json:
        typer.echo(json.dumps({"ok": not down, "down": down, "stores": [r.as_dict() for r in results]}, indent=2))
    else:
        for r in results:
            if not r.configured:
                typer.echo(f"{r.store:<9} -        {r.error}")
            elif r.ok:
                typer.echo(f"{r.store:<9} ok       {r.latency_ms:7.1f} ms  {r.version}  {r.target}")
            else:
                typer.echo(f"{r.store:<9} DOWN     {r.target}: {r.error}")
    if down:
        fail(f"store(s) down: {', '.join(down)}")


def candles(
    exchange: ExchangeOpt,
    symbol: SymbolOpt,
    start: StartOpt,
    end: EndOpt,
    timeframe: TimeframeOpt = "1m",
    output: Annotated[CandleFormat, typer.Option("--format", "-f", help="How to print them.")] = CandleFormat.TABLE,
) -> None:
    """Read stored candles of one series back, as a table, CSV or JSON (one object per candle).

    Candles are read and printed a frame at a time, so memory stays flat however long the range.
    """
    import sys

    from marketkeeper.store_set import StoreSet

    key = series_key(exchange, symbol, timeframe)
    start_at, end_at = parse_time(start, "--start"), parse_time(end, "--end")
    # A read never touches the Redis cache: not opening it spares the start-up importing redis-py.
    with user_errors(), StoreSet.open(replace(store_config(), redis=None)) as stores:
        if output is CandleFormat.CSV:
            # The store's own export (PostgreSQL: its CSV bytes, streamed), in bytes after any text so far.
            sys.stdout.flush()
            stores.candles.write_csv(key, start_at, end_at, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            from marketkeeper.cli.candle_output import write_json, write_table

            write = write_json if output is CandleFormat.JSON else write_table
            write(stores.candles.iter_frames(key, start_at, end_at), sys.stdout)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command()(health)
    app.command()(candles)
