"""``marketkeeper gaps``, ``gaps detect`` and ``backfill``: adapters over :mod:`marketkeeper.services.gaps`
(and, ``--via airflow``, :mod:`marketkeeper.services.remote`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from marketkeeper.cli.common import (
    EndOpt,
    ExchangeOpt,
    MaxFailedOpt,
    SourceOpt,
    StartOpt,
    SymbolOpt,
    TableFormat,
    TimeframeOpt,
    Via,
    WaitOpt,
    fail,
    parse_range,
    parse_time,
    print_listing,
    series_key,
    store_config,
    user_errors,
)
from marketkeeper.ledger.models.enums import GapStatus
from marketkeeper.services.policy import DEFAULT_MAX_FAILED_FRACTION

if TYPE_CHECKING:
    from datetime import datetime

    from marketkeeper.candles import SeriesKey
    from marketkeeper.gaps.backfill import Detection

gaps_app = typer.Typer(help="The gap registry: missing candles found, backfilled, or empty at the source.")

FormatOpt = Annotated[TableFormat, typer.Option("--format", "-f", help="How to print it.")]


@gaps_app.callback(invoke_without_command=True)
def gaps_list(
    ctx: typer.Context,
    exchange: Annotated[str | None, typer.Option("--exchange", "-e", help="Only this exchange.")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this symbol.")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", help="Only this timeframe.")] = None,
    status: Annotated[GapStatus | None, typer.Option("--status", help="Only gaps in this state.")] = None,
    output: FormatOpt = TableFormat.TABLE,
) -> None:
    """List the gap registry (a subcommand such as `detect` does something else)."""
    if ctx.invoked_subcommand is not None:
        return
    from marketkeeper.gaps.registry import list_gaps
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work
    from marketkeeper.timeframes import Timeframe

    with user_errors():
        if timeframe is not None:
            Timeframe.parse(timeframe)
        engine = create_ledger_engine(store_config().ledger_url)
        try:
            with unit_of_work(engine) as repos:
                records = [
                    _gap_record(m.exchange, m.symbol, g)
                    for m, g in list_gaps(
                        repos.session, exchange=exchange, symbol=symbol, timeframe=timeframe, status=status
                    )
                ]
        finally:
            engine.dispose()
    print_listing(records, output, as_json=lambda r: r, lines=_gap_lines, empty="no gaps recorded")


def _gap_lines(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['exchange']}:{r['symbol']} {r['timeframe']:<3} [{r['start']}, {r['end']}) {r['missing']:>8} missing  "
        f"{r['status']:<16} attempts {r['attempts']}" + (f"  {r['last_error']}" if r["last_error"] else "")
    ]


def _gap_record(exchange: str, symbol: str, g: Any) -> dict[str, Any]:
    return {
        "id": g.id,
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": g.timeframe,
        "start": g.start.isoformat(),
        "end": g.end.isoformat(),
        "missing": g.missing_count,
        "status": str(g.status),
        "attempts": g.attempts,
        "first_seen": g.first_seen.isoformat(),
        "last_attempt": g.last_attempt.isoformat() if g.last_attempt else None,
        "resolved_at": g.resolved_at.isoformat() if g.resolved_at else None,
        "last_error": g.last_error,
    }


@gaps_app.command("detect")
def gaps_detect(
    exchange: Annotated[str | None, typer.Option("--exchange", "-e", help="Only this exchange.")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this symbol (needs --exchange).")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", help="The series' timeframe.")] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Window start (default: the market's first date).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Window end (default: the last closed candle).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; leave the registry as it is.")] = False,
    output: FormatOpt = TableFormat.TABLE,
) -> None:
    """Detect missing candles of one series (or of every declared active market) and record them."""
    from marketkeeper.services.gaps import detect_gaps
    from marketkeeper.services.markets import market_for, plan_markets

    if symbol is not None and exchange is None:
        fail("--symbol needs --exchange")
    start_at = parse_time(start, "--start") if start else None
    end_at = parse_time(end, "--end") if end else None
    config = store_config()
    with user_errors():
        if exchange is not None and symbol is not None:
            markets = [market_for(series_key(exchange, symbol, timeframe or "1m"))]
        else:
            markets = [
                m
                for m in plan_markets(config)
                if (exchange is None or m.exchange == exchange)
                and (timeframe is None or str(m.base_timeframe) == timeframe)
            ]
        results = [detect_gaps(config, m, start=start_at, end=end_at, record=not dry_run) for m in markets]
    _print_detections(results, output, dry_run)


def _print_detections(results: list[Detection], output: TableFormat, dry_run: bool) -> None:
    def as_json(d: Detection) -> dict[str, Any]:
        holes = [{"start": g.start.isoformat(), "end": g.end.isoformat(), "missing": g.missing} for g in d.gaps]
        return {**d.as_dict(), "holes": holes}

    def lines(d: Detection) -> list[str]:
        head = (
            f"{d.key} [{d.window[0].isoformat()}, {d.window[1].isoformat()}) from {d.origin}: {len(d.gaps)} gap(s), "
            f"{d.missing} missing" + ("" if dry_run else f"; registry {d.registry.as_dict()}")
        )
        more = [f"  ... {len(d.gaps) - 20} more (use --format json for all)"] if len(d.gaps) > 20 else []
        return [head, *(f"  {g}" for g in d.gaps[:20]), *more]

    empty = "no markets to check (declare some, or pass --exchange and --symbol)"
    print_listing(results, output, as_json=as_json, lines=lines, empty=empty)


def backfill(
    exchange: ExchangeOpt,
    symbol: SymbolOpt,
    start: StartOpt,
    end: EndOpt,
    timeframe: TimeframeOpt = "1m",
    source: SourceOpt = None,
    force: Annotated[
        bool, typer.Option("--force/--only-gaps", help="Re-fetch the whole range, or (default) only what is missing.")
    ] = False,
    retry_source_empty: Annotated[bool, typer.Option(help="Also retry gaps the source had nothing for.")] = False,
    max_failed_fraction: MaxFailedOpt = DEFAULT_MAX_FAILED_FRACTION,
    wait: WaitOpt = None,
    via: Annotated[Via, typer.Option("--via", help="local (in-process) or airflow (a running Airflow).")] = Via.LOCAL,
    airflow_url: Annotated[
        str | None, typer.Option("--airflow-url", envvar="AIRFLOW_API_URL", help="Airflow API server URL.")
    ] = None,
    airflow_user: Annotated[str | None, typer.Option("--airflow-user", envvar="AIRFLOW_API_USER")] = None,
    airflow_password: Annotated[
        str | None, typer.Option("--airflow-password", envvar="AIRFLOW_API_PASSWORD", hidden=True)
    ] = None,
) -> None:
    """Fill a range of one series: only its due gaps (default) or all of it (--force), through the quality gate.

    In-process with a progress bar, or --via airflow: the same gap backfill as an `ohlcv_gaps` run for this
    series and window (--force: an Airflow backfill of `ohlcv_ingest` over the range). --wait SECONDS: locally,
    how long to wait for another writer's series lock; via Airflow, follow the run that long and exit with its
    state.
    """
    key = series_key(exchange, symbol, timeframe)
    start_at, end_at = parse_range(start, end)
    if via is Via.AIRFLOW:
        from marketkeeper.cli.remote import backfill_via_airflow

        backfill_via_airflow(
            key,
            start_at,
            end_at,
            source=source,
            force=force,
            retry_source_empty=retry_source_empty,
            max_failed_fraction=max_failed_fraction,
            wait=wait,
            url=airflow_url,
            user=airflow_user,
            password=airflow_password,
        )
        return
    _backfill_local(key, start_at, end_at, source, force, retry_source_empty, max_failed_fraction, wait)


def _backfill_local(
    key: SeriesKey,
    start_at: datetime,
    end_at: datetime,
    source: str | None,
    force: bool,
    retry_source_empty: bool,
    max_failed_fraction: float,
    wait: float | None,
) -> None:
    from marketkeeper.cli.progress import candle_progress
    from marketkeeper.gaps.backfill import BackfillError, BackfillReport
    from marketkeeper.services.gaps import BackfillRequest, backfill_market
    from marketkeeper.services.markets import market_for
    from marketkeeper.services.policy import lock_policy

    config = store_config()
    policy = lock_policy() if wait is None else replace(lock_policy(), wait=wait)
    failure: BackfillError | None = None
    with user_errors():
        request = BackfillRequest(
            market_for(key, source=source),
            start_at,
            end_at,
            force=force,
            retry_source_empty=retry_source_empty,
            max_failed_fraction=max_failed_fraction,
        )
        with candle_progress(str(key)) as (advance, elapsed):
            try:
                report: BackfillReport = backfill_market(config, request, progress=advance, policy=policy)
            except BackfillError as exc:
                failure, report = exc, exc.report
            seconds = elapsed()
    rate = f", {report.fetched / seconds:,.0f} candles/s" if seconds > 0 and report.fetched else ""
    typer.echo(
        f"{key} [{report.start.isoformat()}, {report.end.isoformat()}) {'forced' if force else 'gaps only'}: "
        f"{report.gaps_attempted} gap(s) attempted: {report.filled} filled, {report.partially_filled} partially "
        f"filled, {report.source_empty} source_empty, {report.still_open} still open, {report.failed} failed; "
        f"{report.fetched} fetched, {report.written} written, {report.quarantined} quarantined, "
        f"{report.skipped} skipped in {seconds:.1f}s{rate}; {report.missing_after} candle(s) still missing "
        f"({config.summary})"
    )
    if failure is not None:
        fail(str(failure))


def register(app: typer.Typer) -> None:
    app.command()(backfill)
