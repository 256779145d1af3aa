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


def retention(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be deleted and held back; delete nothing.")
    ] = False,
    market: Annotated[
        list[str] | None,
        typer.Option("--market", "-m", help="exchange:symbol[:tf] to apply (repeatable; default all)."),
    ] = None,
    wait: WaitOpt = None,
) -> None:
    """Delete candles older than each declared timeframe's retention_days, as the ohlcv_retention DAG does.

    Base candles are deleted only where every tier computed from them was computed after their last write;
    per series it prints the range deleted (or, with --dry-run, that would be), the rows, and anything held
    back and why.
    """
    from marketkeeper.services.markets import declared_markets, select_markets
    from marketkeeper.services.policy import lock_policy
    from marketkeeper.services.retention import RetentionItem, apply_retention

    config = store_config()
    policy = lock_policy() if wait is None else replace(lock_policy(), wait=wait)
    verb = "would delete" if dry_run else "deleted"

    def shown(item: RetentionItem) -> None:
        if item.start is None or item.end is None:
            what = "nothing to delete"
        else:
            rows = item.rows if dry_run else item.deleted
            what = f"{verb} [{item.start.isoformat()}, {item.end.isoformat()}): {rows} candle(s)"
        typer.echo(f"{item.key} (keep {item.days} days, cut {item.cut.isoformat()}): {what}")
        for reason in item.held_back:
            typer.echo(f"  held back {reason}")

    with user_errors():
        declared = declared_markets()
        # Retention applies to inactive markets too: their history is kept, and so are its limits.
        chosen = [m for m in (select_markets(declared, market) if market else declared) if m.retention_days]
        if not chosen:
            typer.echo("no market declares retention_days: nothing to do")
            return
        report = apply_retention(config, chosen, dry_run=dry_run, policy=policy, progress=shown)
    total = sum(i.rows for i in report.items) if dry_run else report.deleted
    typer.echo(f"{verb} {total} candle(s) in {len(report.items)} series ({config.summary})")


def maintenance(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; change nothing.")] = False,
) -> None:
    """Delete the ledger's aged platform rows (quality runs, quarantined candles, system events, filled gaps,
    audit rows; ages from MARKETKEEPER_KEEP_*_DAYS) in small batches and VACUUM (ANALYZE) the tables that churn
    (PostgreSQL), as the ledger_maintenance DAG does."""
    from marketkeeper.services.maintenance import maintain_ledger

    config = store_config()
    with user_errors():
        report = maintain_ledger(config, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for name, table in report.tables.items():
        typer.echo(f"{name}: {verb} {table['rows']} row(s) older than {table['keep_days']} days")
    vacuumed = ", ".join(report.vacuumed) or "nothing (SQLite: no VACUUM)"
    typer.echo(f"{'would vacuum' if dry_run else 'vacuumed'}: {vacuumed}")


def register(app: typer.Typer) -> None:
    app.command()(downsample)
    app.command()(retention)
    app.command()(maintenance)
