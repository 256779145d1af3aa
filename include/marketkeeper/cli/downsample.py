"""``marketkeeper downsample``, ``retention`` and ``maintenance`` (issue 11): thin adapters over
:mod:`marketkeeper.services.downsample`, :mod:`~marketkeeper.services.retention` and
:mod:`~marketkeeper.services.maintenance`."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from marketkeeper.cli.common import (
    ExchangeOpt,
    SymbolOpt,
    TimeframeOpt,
    WaitOpt,
    fail,
    parse_range,
    series_key,
    store_config,
    user_errors,
)

ToOpt = Annotated[
    str | None,
    typer.Option("--to", help="Comma-separated tiers to recompute, e.g. 1h,4h (default: every declared tier)."),
]


def downsample(
    exchange: ExchangeOpt,
    symbol: SymbolOpt,
    start: Annotated[str, typer.Option("--start", help="First base open time, inclusive (ISO 8601; UTC).")],
    end: Annotated[str, typer.Option("--end", help="Last base open time, exclusive (ISO 8601; UTC).")],
    timeframe: TimeframeOpt = "1m",
    to: ToOpt = None,
    wait: WaitOpt = None,
) -> None:
    """Recompute a declared market's derived tiers from its stored base series over a range, as the
    ohlcv_downsample DAG does: every bucket holding a base candle of the range, closed buckets only.

    Prints each tier as it is written (buckets, and how many are incomplete: fewer base candles than the bucket
    spans), then a total.
    """
    from marketkeeper.services.downsample import DownsampleRequest, TierWrite, choose_tiers, downsample_market
    from marketkeeper.services.markets import declared_markets
    from marketkeeper.services.policy import lock_policy

    key = series_key(exchange, symbol, timeframe)
    start_at, end_at = parse_range(start, end)
    config = store_config()
    policy = lock_policy() if wait is None else replace(lock_policy(), wait=wait)
    with user_errors():
        market = next((m for m in declared_markets() if m.key == key), None)
        if market is None:
            fail(f"{key} is not a declared market; tiers are declared per market in the markets declaration")
        tiers = choose_tiers(market, [t.strip() for t in to.split(",") if t.strip()] if to else None)
        if not tiers:
            fail(f"{key} derives no tier (its declaration has derived: [])")

        def shown(write: TierWrite) -> None:
            typer.echo(f"  {write.timeframe}: {write.buckets} bucket(s), {write.incomplete} incomplete")

        report = downsample_market(
            config, DownsampleRequest(market, start_at, end_at, tiers), policy=policy, progress=shown
        )
    typer.echo(
        f"{key} [{report.start.isoformat()}, {report.end.isoformat()}): {report.buckets} bucket(s) in "
        f"{len(report.tiers)} tier(s) ({config.summary})"
    )


def register(app: typer.Typer) -> None:
    app.command()(downsample)
