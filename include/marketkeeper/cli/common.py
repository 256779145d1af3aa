"""What every ``marketkeeper`` command shares: option types, choices as enums, time parsing, and the rule that
a foreseeable failure prints one line naming its cause and exits non-zero, never a traceback."""

from __future__ import annotations

import contextlib
import enum
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from marketkeeper.errors import MarketkeeperError, first_line

if TYPE_CHECKING:
    from marketkeeper.series import SeriesKey
    from marketkeeper.store_set import StoreConfig


T = TypeVar("T")


class TableFormat(enum.StrEnum):
    """How a listing is printed."""

    TABLE = "table"
    JSON = "json"


class CandleFormat(enum.StrEnum):
    """How candles are printed."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


class Via(enum.StrEnum):
    """Where a backfill runs."""

    LOCAL = "local"
    AIRFLOW = "airflow"


def print_listing(
    items: Sequence[T],
    output: TableFormat,
    *,
    as_json: Callable[[T], object],
    lines: Callable[[T], Iterable[str]],
    empty: str,
) -> None:
    """A listing: one JSON array (``as_json`` of each item) or, as a table, ``lines`` of each item (``empty`` when
    there is none)."""
    if output is TableFormat.JSON:
        typer.echo(json.dumps([as_json(item) for item in items], indent=2))
        return
    if not items:
        typer.echo(empty)
    for item in items:
        for line in lines(item):
            typer.echo(line)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the failures a user can cause or meet (a bad setting, a store that is down, a refused value)
    into one line on stderr and exit code 1."""
    try:
        yield
    except MarketkeeperError as exc:
        fail(first_line(exc))
    except Exception as exc:
        # A command that never loaded SQLAlchemy (a candle read from InfluxDB) cannot meet its errors, and
        # importing it just to name the class would cost that command a fifth of its start-up.
        sa = sys.modules.get("sqlalchemy")
        if sa is None or not isinstance(exc, sa.exc.SQLAlchemyError):
            raise
        cause = first_line(exc)
        if "no such table" in cause or ("relation" in cause and "does not exist" in cause):
            cause += " (is the ledger migrated? run `marketkeeper db upgrade`)"
        fail(f"the ledger failed: {cause}")


def parse_time(value: str, option: str) -> datetime:
    """An ISO 8601 time from the command line; one without an offset is UTC; outside what stores hold: error."""
    from marketkeeper.timeframes import SUPPORTED_SPAN, ensure_utc

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time (e.g. 2024-01-01 or 2024-01-01T00:00Z)")
    with user_errors():
        at = ensure_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC), option)
    # Checked here, before any store is touched, for the commands that take a single bound (gaps detect).
    lo, hi = SUPPORTED_SPAN
    if not lo <= at <= hi:
        fail(f"{option} {at.isoformat()} is outside the supported span {lo.isoformat()} .. {hi.isoformat()}")
    return at


def parse_range(start: str, end: str) -> tuple[datetime, datetime]:
    """``--start``/``--end`` as a checked, non-empty range."""
    from marketkeeper.timeframes import check_range

    start_at, end_at = parse_time(start, "--start"), parse_time(end, "--end")
    if start_at >= end_at:
        fail(f"--start {start_at.isoformat()} must be before --end {end_at.isoformat()}")
    with user_errors():
        return check_range(start_at, end_at)


def series_key(exchange: str, symbol: str, timeframe: str) -> SeriesKey:
    from marketkeeper.series import SeriesKey

    try:
        return SeriesKey.of(exchange, symbol, timeframe)
    except ValueError as exc:
        fail(str(exc))


def store_config() -> StoreConfig:
    """The stores the environment names: the CLI's one way to reach them."""
    from marketkeeper.store_set import StoreConfig

    with user_errors():
        return StoreConfig.from_settings()


ExchangeOpt = Annotated[str, typer.Option("--exchange", "-e", help="ccxt exchange id, e.g. binance.")]
SymbolOpt = Annotated[str, typer.Option("--symbol", "-s", help="Unified symbol, e.g. BTC/USDT.")]
TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t", help="1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 1w 1M.")]
StartOpt = Annotated[str, typer.Option("--start", help="First open time, inclusive (ISO 8601; UTC if no offset).")]
EndOpt = Annotated[str, typer.Option("--end", help="Last open time, exclusive (ISO 8601; UTC if no offset).")]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source", help="ccxt | ccxt:EXCHANGE | files:DIR | synthetic[:SEED] (default: the declared market's source)."
    ),
]
MaxFailedOpt = Annotated[
    float, typer.Option(help="Fail when a window's share of rows failing the quality gate exceeds this.")
]
WaitOpt = Annotated[
    float | None,
    typer.Option("--wait", help="Seconds to wait for another writer's series lock (default: the lock policy, 300)."),
]
