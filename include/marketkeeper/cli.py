"""The ``marketkeeper`` command line: the same functions the DAGs call, run in-process."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from marketkeeper.errors import MarketkeeperError
from marketkeeper.settings import get_settings

if TYPE_CHECKING:
    from marketkeeper.candles import SeriesKey

app = typer.Typer(
    help="Keep a crypto trading system's ledger, candles and caches complete, correct and recoverable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="The ledger database (PostgreSQL, or SQLite when DATABASE_URL is unset).", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the configured ledger to REVISION (default: the newest)."""
    from sqlalchemy.engine import make_url

    from marketkeeper.ledger import migrate

    url = get_settings().ledger_url
    target = make_url(url).render_as_string(hide_password=True)
    try:
        before = migrate.current(url)
        migrate.upgrade(url, revision)
        after = migrate.current(url)
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:  # a driver error: print its first line, not a traceback
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _fail(f"could not migrate {target}: {first}") from exc
    if before == after:
        typer.echo(f"{target}: already at {after}")
    else:
        typer.echo(f"{target}: {before or 'empty'} -> {after}")


@db_app.command("current")
def db_current() -> None:
    """Print the ledger's current schema revision."""
    from marketkeeper.ledger import migrate

    typer.echo(migrate.current(get_settings().ledger_url) or "empty (run `marketkeeper db upgrade`)")


@app.command()
def health(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object, not a table.")] = False,
) -> None:
    """Check every configured store: round-trip latency and server version.

    Exits 1 naming each configured store that is down; stores not configured are reported, not failed.
    """
    from marketkeeper.health import check_stores

    try:
        results = check_stores(get_settings())
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
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
        raise _fail(f"store(s) down: {', '.join(down)}")


def _parse_time(value: str, option: str) -> datetime:
    """An ISO 8601 time from the command line; one without an offset is UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _fail(f"{option} {value!r} is not an ISO 8601 time (e.g. 2024-01-01 or 2024-01-01T00:00Z)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _series_key(exchange: str, symbol: str, timeframe: str) -> SeriesKey:
    from marketkeeper.candles import SeriesKey

    try:
        return SeriesKey.of(exchange, symbol, timeframe)
    except ValueError as exc:
        raise _fail(str(exc)) from exc


ExchangeOpt = Annotated[str, typer.Option("--exchange", "-e", help="ccxt exchange id, e.g. binance.")]
SymbolOpt = Annotated[str, typer.Option("--symbol", "-s", help="Unified symbol, e.g. BTC/USDT.")]
TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t", help="1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w 1M.")]
StartOpt = Annotated[str, typer.Option("--start", help="First open time, inclusive (ISO 8601; UTC if no offset).")]
EndOpt = Annotated[str, typer.Option("--end", help="Last open time, exclusive (ISO 8601; UTC if no offset).")]
SourceOpt = Annotated[
    str, typer.Option("--source", help="ccxt | files:DIR | synthetic[:SEED] (default ccxt on --exchange).")
]
MaxFailedOpt = Annotated[
    float, typer.Option(help="Fail when a window's share of rows failing the quality gate exceeds this.")
]


@app.command()
def ingest(
    exchange: ExchangeOpt,
    symbol: SymbolOpt,
    start: StartOpt,
    end: EndOpt,
    timeframe: TimeframeOpt = "1m",
    source: SourceOpt = "ccxt",
    max_failed_fraction: MaxFailedOpt = 0.01,
) -> None:
    """Fetch candles into the configured store through the quality gate, in-process, as the DAG does.

    Idempotent: re-running a range leaves the stores as they were. Prints written, quarantined and skipped rows.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from marketkeeper.ingest import ingest_range
    from marketkeeper.locks import series_lock
    from marketkeeper.sources import make_source
    from marketkeeper.store_set import StoreSet

    key = _series_key(exchange, symbol, timeframe)
    start_at, end_at = _parse_time(start, "--start"), _parse_time(end, "--end")
    if start_at >= end_at:
        raise _fail(f"--start {start_at.isoformat()} must be before --end {end_at.isoformat()}")
    expected = key.timeframe.count(start_at, end_at)
    try:
        candle_source = make_source(source, exchange=exchange)
        with (
            StoreSet.from_settings(get_settings()) as stores,
            series_lock(key, redis_client=stores.cache.client if stores.cache else None, ledger=stores.ledger),
            Progress(
                TextColumn(f"{key}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
            ) as bar,
        ):
            task = bar.add_task("ingest", total=expected)
            report = ingest_range(
                key,
                start_at,
                end_at,
                source=candle_source,
                store=stores.candles,
                ledger=stores.ledger,
                cache=stores.cache,
                max_failed_fraction=max_failed_fraction,
                progress=lambda r: bar.update(task, completed=min(expected, r.fetched)),
            )
            where = stores.description
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(
        f"{key} [{start_at.isoformat()}, {end_at.isoformat()}): {report.fetched} fetched, {report.written} written, "
        f"{report.quarantined} quarantined, {report.skipped} skipped ({where})"
    )
    for cause in report.cache_errors[:1]:
        typer.echo(f"warning: candles stored but the Redis update failed: {cause}", err=True)


@app.command()
def candles(
    exchange: ExchangeOpt,
    symbol: SymbolOpt,
    start: StartOpt,
    end: EndOpt,
    timeframe: TimeframeOpt = "1m",
    output: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
) -> None:
    """Read stored candles of one series back, as a table, CSV or JSON (one object per candle)."""
    from marketkeeper.store_set import StoreSet

    if output not in ("table", "csv", "json"):
        raise _fail(f"--format {output!r}: use table, csv or json")
    key = _series_key(exchange, symbol, timeframe)
    start_at, end_at = _parse_time(start, "--start"), _parse_time(end, "--end")
    try:
        with StoreSet.from_settings(get_settings()) as stores:
            frame = stores.candles.read(key, start_at, end_at)
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    frame = frame.assign(open_time=frame["open_time"].map(lambda t: t.isoformat()))
    if output == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
    elif output == "json":
        # json.dumps writes floats by repr, so values round-trip exactly; missing values become null.
        records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        typer.echo(json.dumps(records))
    else:
        typer.echo(frame.to_string(index=False) if len(frame) else "no candles in that range")


# --- performance rollups and the demo bot (marketkeeper.rollups, marketkeeper.demo_seed) ------------------

if TYPE_CHECKING:
    from datetime import date

    from marketkeeper.influxdb import InfluxDBClient


def _parse_day(value: str, option: str) -> date:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise _fail(f"{option} {value!r} is not a date (YYYY-MM-DD)") from exc


def _print_rollups(rows: list[dict[str, object]]) -> None:
    def num(value: object, spec: str) -> str:
        return "-" if value is None else format(float(value), spec)  # type: ignore[arg-type]

    typer.echo(
        f"{'date':<10} {'trades':>6} {'wins':>5} {'losses':>6} {'win%':>6} {'net pnl':>12} {'equity':>12} "
        f"{'sharpe':>7} {'sortino':>7} {'calmar':>7} {'max dd':>7}"
    )
    for row in rows:
        typer.echo(
            f"{row['metric_date']!s:<10} {row['total_trades']!s:>6} {row['winning_trades']!s:>5} "
            f"{row['losing_trades']!s:>6} {num(row['win_rate'], '.1%'):>6} {num(row['total_pnl'], ',.2f'):>12} "
            f"{num(row['equity'], ',.2f'):>12} {num(row['sharpe_ratio'], '.2f'):>7} "
            f"{num(row['sortino_ratio'], '.2f'):>7} {num(row['calmar_ratio'], '.2f'):>7} "
            f"{num(row['max_drawdown'], '.2%'):>7}"
        )


def _influxdb_or_none() -> InfluxDBClient | None:
    from marketkeeper.influxdb import InfluxDBClient

    settings = get_settings()
    return InfluxDBClient.from_settings(settings) if settings.influxdb_url else None


@app.command()
def rollup(
    bot: Annotated[str, typer.Option("--bot", help="Bot id, or its name when unique.")],
    start: Annotated[str, typer.Option("--start", help="First day, UTC (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last day, UTC, included (YYYY-MM-DD).")],
    window_days: Annotated[
        int, typer.Option(help="Days of returns behind Sharpe/Sortino/Calmar/drawdown; 0 = all history.", min=0)
    ] = 90,
) -> None:
    """Roll a bot's performance up for every day from START to END into the ledger (and InfluxDB), as the DAG does.

    Idempotent: re-running a day replaces its row. Prints one line per day.
    """
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.rollups import rollup_bot

    first, last = _parse_day(start, "--start"), _parse_day(end, "--end")
    influxdb = None
    engine = create_ledger_engine(get_settings().ledger_url)
    try:
        influxdb = _influxdb_or_none()
        rows = rollup_bot(engine, bot, first, last, window_days=window_days or None, influxdb=influxdb)
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
        if influxdb is not None:
            influxdb.close()
    typer.echo(f"bot {rows[0].bot_name} ({rows[0].bot_id}), {len(rows)} days, risk window {window_days or 'all'} days")
    _print_rollups([r.row() for r in rows])


@app.command("demo-seed")
def demo_seed(
    trades: Annotated[int, typer.Option("--trades", help="Synthetic fills for a new demo bot.", min=2)] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for a new demo bot.")] = 7,
) -> None:
    """Seed one paper bot (user `demo`, bot `demo-paper`) with synthetic trades and hourly balance snapshots,
    roll it up, and print its latest performance row. Running it again adds nothing."""
    from marketkeeper.demo_seed import seed_paper_bot
    from marketkeeper.ledger import PerformanceMetrics, create_ledger_engine, session_scope
    from marketkeeper.rollups import latest_performance, rollup_bot

    influxdb = None
    engine = create_ledger_engine(get_settings().ledger_url)
    try:
        seeded = seed_paper_bot(engine, n_trades=trades, seed=seed)
        influxdb = _influxdb_or_none()
        rollup_bot(engine, seeded.bot_id, seeded.first_day, seeded.last_day, influxdb=influxdb)
        with session_scope(engine) as session:
            latest = latest_performance(session, seeded.bot_id)
            row = {c.key: getattr(latest, c.key) for c in PerformanceMetrics.__mapper__.column_attrs}
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
        if influxdb is not None:
            influxdb.close()
    typer.echo(
        f"demo bot {seeded.bot_id}: {seeded.trades_total} trades ({seeded.trades_added} new), "
        f"{seeded.snapshots} hourly snapshots, {seeded.first_day}..{seeded.last_day}"
    )
    typer.echo("latest performance row:")
    _print_rollups([row])
    figures = ("profit_factor", "expectancy", "avg_win", "avg_loss", "largest_win", "largest_loss", "total_fees")
    typer.echo("  ".join(f"{name}={'-' if row[name] is None else format(float(row[name]), '.4g')}" for name in figures))


# --- Gaps and backfill (issue 4) --------------------------------------------------------------------------

gaps_app = typer.Typer(help="The gap registry: missing candles found, backfilled, or empty at the source.")
app.add_typer(gaps_app, name="gaps")

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table | json")]


def _gap_filters(exchange: str | None, symbol: str | None, timeframe: str | None) -> None:
    if timeframe is not None:
        from marketkeeper.timeframes import Timeframe, TimeframeError

        try:
            Timeframe.parse(timeframe)
        except TimeframeError as exc:
            raise _fail(str(exc)) from exc


@gaps_app.callback(invoke_without_command=True)
def gaps_list(
    ctx: typer.Context,
    exchange: Annotated[str | None, typer.Option("--exchange", "-e", help="Only this exchange.")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this symbol.")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", help="Only this timeframe.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="open | filled | partially_filled | source_empty | failed")
    ] = None,
    output: FormatOpt = "table",
) -> None:
    """List the gap registry (a subcommand such as `detect` does something else)."""
    if ctx.invoked_subcommand is not None:
        return
    from marketkeeper.gap_registry import list_gaps
    from marketkeeper.ledger import GapStatus, create_ledger_engine, session_scope

    if output not in ("table", "json"):
        raise _fail(f"--format {output!r}: use table or json")
    if status is not None and status not in {s.value for s in GapStatus}:
        raise _fail(f"--status {status!r}: use one of {', '.join(s.value for s in GapStatus)}")
    _gap_filters(exchange, symbol, timeframe)
    engine = create_ledger_engine()
    try:
        with session_scope(engine) as session:
            found = list_gaps(session, exchange=exchange, symbol=symbol, timeframe=timeframe, status=status)
            records = [
                {
                    "id": g.id,
                    "exchange": m.exchange,
                    "symbol": m.symbol,
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
                for m, g in found
            ]
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    finally:
        engine.dispose()
    if output == "json":
        typer.echo(json.dumps(records, indent=2))
        return
    if not records:
        typer.echo("no gaps recorded")
        return
    for r in records:
        typer.echo(
            f"{r['exchange']}:{r['symbol']} {r['timeframe']:<3} [{r['start']}, {r['end']}) {r['missing']:>8} missing  "
            f"{r['status']:<16} attempts {r['attempts']}" + (f"  {r['last_error']}" if r["last_error"] else "")
        )


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
    output: FormatOpt = "table",
) -> None:
    """Detect missing candles of one series (or of every active market) and record them in the registry."""
    import sqlalchemy as sa

    from marketkeeper.backfill import detect_series
    from marketkeeper.ledger import Market, session_scope
    from marketkeeper.store_set import StoreSet

    if output not in ("table", "json"):
        raise _fail(f"--format {output!r}: use table or json")
    if symbol is not None and exchange is None:
        raise _fail("--symbol needs --exchange")
    start_at = _parse_time(start, "--start") if start else None
    end_at = _parse_time(end, "--end") if end else None
    results = []
    try:
        with StoreSet.from_settings(get_settings()) as stores:
            if exchange is not None and symbol is not None:
                keys = [_series_key(exchange, symbol, timeframe or "1m")]
            else:
                with session_scope(stores.ledger) as session:
                    query = sa.select(Market).where(Market.active.is_(True)).order_by(Market.exchange, Market.symbol)
                    if exchange is not None:
                        query = query.where(Market.exchange == exchange)
                    if timeframe is not None:
                        query = query.where(Market.base_timeframe == timeframe)
                    keys = [_series_key(m.exchange, m.symbol, m.base_timeframe) for m in session.scalars(query)]
            for key in keys:
                found = detect_series(
                    key, store=stores.candles, ledger=stores.ledger, start=start_at, end=end_at, record=not dry_run
                )
                results.append(found)
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    if output == "json":
        payload = [
            {
                **d.as_dict(),
                "holes": [
                    {"start": g.start.isoformat(), "end": g.end.isoformat(), "missing": g.missing} for g in d.gaps
                ],
            }
            for d in results
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    if not results:
        typer.echo("no markets to check (declare some, or pass --exchange and --symbol)")
    for d in results:
        typer.echo(
            f"{d.key} [{d.window[0].isoformat()}, {d.window[1].isoformat()}): {len(d.gaps)} gap(s), "
            f"{d.missing} missing" + ("" if dry_run else f"; registry {d.registry.as_dict()}")
        )
        for g in d.gaps[:20]:
            typer.echo(f"  {g}")
        if len(d.gaps) > 20:
            typer.echo(f"  ... {len(d.gaps) - 20} more (use --format json for all)")


@app.command()
def backfill(
    exchange: ExchangeOpt,
    symbol: SymbolOpt,
    start: StartOpt,
    end: EndOpt,
    timeframe: TimeframeOpt = "1m",
    source: SourceOpt = "ccxt",
    force: Annotated[
        bool, typer.Option("--force/--only-gaps", help="Re-fetch the whole range, or (default) only what is missing.")
    ] = False,
    retry_source_empty: Annotated[bool, typer.Option(help="Also retry gaps the source had nothing for.")] = False,
    max_failed_fraction: MaxFailedOpt = 0.01,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the series lock if another writer holds it.")] = 0.0,
    via: Annotated[str, typer.Option("--via", help="local (in-process) | airflow (ask a running Airflow).")] = "local",
    airflow_url: Annotated[
        str | None, typer.Option("--airflow-url", envvar="AIRFLOW_API_URL", help="Airflow API server URL.")
    ] = None,
    airflow_user: Annotated[str | None, typer.Option("--airflow-user", envvar="AIRFLOW_API_USER")] = None,
    airflow_password: Annotated[
        str | None, typer.Option("--airflow-password", envvar="AIRFLOW_API_PASSWORD", hidden=True)
    ] = None,
) -> None:
    """Fill a range of one series: only its holes (default) or all of it (--force), through the quality gate.

    In-process with a progress bar, or --via airflow: a backfill of the ohlcv_ingest DAG on a running Airflow.
    """
    key = _series_key(exchange, symbol, timeframe)
    start_at, end_at = _parse_time(start, "--start"), _parse_time(end, "--end")
    if start_at >= end_at:
        raise _fail(f"--start {start_at.isoformat()} must be before --end {end_at.isoformat()}")
    if via == "airflow":
        _backfill_via_airflow(key, start_at, end_at, force, airflow_url, airflow_user, airflow_password)
        return
    if via != "local":
        raise _fail(f"--via {via!r}: use local or airflow")
    _backfill_local(key, start_at, end_at, source, force, retry_source_empty, max_failed_fraction, wait)


def _backfill_local(
    key: SeriesKey,
    start_at: datetime,
    end_at: datetime,
    source: str,
    force: bool,
    retry_source_empty: bool,
    max_failed_fraction: float,
    wait: float,
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from marketkeeper.backfill import BackfillError, BackfillReport, backfill_series
    from marketkeeper.sources import make_source
    from marketkeeper.store_set import StoreSet

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.speed
            return Text("" if speed is None else f"{speed:,.0f} candles/s")

    failure: BackfillError | None = None
    try:
        candle_source = make_source(source, exchange=key.exchange)
        with (
            StoreSet.from_settings(get_settings()) as stores,
            Progress(
                TextColumn(f"{key}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
            ) as bar,
        ):
            task = bar.add_task("backfill", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=min(done, total) if total else done, total=total or None)

            try:
                report: BackfillReport = backfill_series(
                    key,
                    start_at,
                    end_at,
                    source=candle_source,
                    store=stores.candles,
                    ledger=stores.ledger,
                    cache=stores.cache,
                    force=force,
                    retry_source_empty=retry_source_empty,
                    max_failed_fraction=max_failed_fraction,
                    lock_wait=wait,
                    progress=advance,
                )
            except BackfillError as exc:
                failure, report = exc, exc.report
            elapsed = bar.tasks[0].elapsed or 0.0
            where = stores.description
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    rate = f", {report.fetched / elapsed:,.0f} candles/s" if elapsed > 0 and report.fetched else ""
    typer.echo(
        f"{key} [{start_at.isoformat()}, {end_at.isoformat()}) {'forced' if force else 'gaps only'}: "
        f"{report.gaps_attempted} gap(s) attempted: {report.filled} filled, {report.partially_filled} partially "
        f"filled, {report.source_empty} source_empty, {report.still_open} still open, {report.failed} failed; "
        f"{report.fetched} fetched, {report.written} written, {report.quarantined} quarantined, "
        f"{report.skipped} skipped in {elapsed:.1f}s{rate}; {report.missing_after} candle(s) still missing ({where})"
    )
    if failure is not None:
        raise _fail(str(failure))


def _backfill_via_airflow(
    key: SeriesKey,
    start_at: datetime,
    end_at: datetime,
    force: bool,
    url: str | None,
    user: str | None,
    password: str | None,
) -> None:
    from marketkeeper.airflow_api import AirflowClient

    if not url:
        raise _fail("--via airflow needs --airflow-url (or AIRFLOW_API_URL)")
    client = AirflowClient(url, username=user, password=password)
    try:
        created = client.create_backfill(
            "ohlcv_ingest",
            start_at,
            end_at,
            conf={"markets": [str(key)]},
            reprocess_behavior="completed" if force else "failed",
        )
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    finally:
        client.close()
    base = url.rstrip("/")
    typer.echo(
        f"backfill {created.id} of {created.dag_id} for {key} [{created.from_date}, {created.to_date}] created "
        f"(reprocess: {created.reprocess_behavior}).\n"
        f"Follow it: {base}/dags/{created.dag_id} (Backfills), or "
        f"GET {base}/api/v2/backfills/{created.id}; cancel with POST {base}/api/v2/backfills/{created.id}/cancel"
    )
