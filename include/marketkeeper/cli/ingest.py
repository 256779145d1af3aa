"""``marketkeeper ingest``: one series over a range, through :func:`marketkeeper.services.ingest.ingest_series`."""

from __future__ import annotations

from dataclasses import replace

import typer

from marketkeeper.cli.common import (
    EndOpt,
    ExchangeOpt,
    MaxFailedOpt,
    SourceOpt,
    StartOpt,
    SymbolOpt,
    TimeframeOpt,
    WaitOpt,
    parse_range,
    series_key,
    store_config,
    user_errors,
)
from marketkeeper.services.policy import DEFAULT_MAX_FAILED_FRACTION


def ingest(
    exchange: ExchangeOpt,
    symbol: SymbolOpt,
    start: StartOpt,
    end: EndOpt,
    timeframe: TimeframeOpt = "1m",
    source: SourceOpt = None,
    max_failed_fraction: MaxFailedOpt = DEFAULT_MAX_FAILED_FRACTION,
    wait: WaitOpt = None,
) -> None:
    """Fetch candles into the configured store through the quality gate, in-process, as the DAG does.

    A declared market's first_date and source apply. Idempotent: re-running a range leaves the stores as
    they were. Prints fetched, written, quarantined and skipped rows.
    """
    from marketkeeper.cli.progress import candle_progress
    from marketkeeper.services.ingest import IngestRequest, ingest_series
    from marketkeeper.services.markets import market_for
    from marketkeeper.services.policy import lock_policy

    key = series_key(exchange, symbol, timeframe)
    start_at, end_at = parse_range(start, end)
    config = store_config()
    policy = lock_policy() if wait is None else replace(lock_policy(), wait=wait)
    with user_errors():
        market = market_for(key, source=source)
        expected = key.timeframe.count(start_at, end_at)
        with candle_progress(str(key)) as (advance, _elapsed):
            report = ingest_series(
                config,
                IngestRequest(market, start_at, end_at, max_failed_fraction=max_failed_fraction),
                progress=lambda r: advance(min(expected, r.fetched), expected),
                policy=policy,
            )
    typer.echo(
        f"{key} [{report.start.isoformat()}, {report.end.isoformat()}): {report.fetched} fetched, "
        f"{report.written} written, {report.quarantined} quarantined, {report.skipped} skipped ({config.summary})"
    )
    for cause in report.cache_errors[:1]:
        typer.echo(f"warning: candles stored but the Redis update failed: {cause}", err=True)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
