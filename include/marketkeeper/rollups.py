"""Daily performance rollups: one ``performance_metrics`` row per bot and UTC day, from its trades and equity curve.

What a row holds, and over which data:

* **Trade figures** (counts, win rate, P&L, fees, averages, extremes, profit factor, expectancy) cover the
  trades *of that day* (``[day 00:00, day+1 00:00)`` UTC) that were executed (filled or partially filled),
  computed by :func:`marketkeeper.repositories.statistics.trade_statistics` with its conventions: a trade
  counts when it has a realized P&L (closing fills); opening fills have none, but their fees count;
  ``total_pnl`` is the day's net P&L (realized P&L minus every fee); ``win_rate`` is a fraction (0 to 1, 0 on a
  day without closed trades); ``expectancy`` is net P&L per closed trade.
* **Risk figures** (Sharpe, Sortino, Calmar, max drawdown) cover the **trailing window** of ``window_days``
  daily returns ending with that day (90 by default; ``None``: since the first snapshot), see
  :mod:`marketkeeper.metrics` for the conventions (365 periods, zero-return days kept, drawdown a non-positive
  fraction of equity).
* **Equity** is the bot's account in one currency: the balance snapshots of ``(bot.user_id, bot.exchange)``
  in ``bot.config["quote_currency"]``, else the settlement currency of the bot's latest trade. The closing
  equity of a day is its last snapshot in ``(day 00:00, day+1 00:00]``; days without one carry the previous
  value forward; days before the first or after the last snapshot have no equity and no risk figures. Other
  currencies the account holds are not valued (that needs prices).

A day without trades still gets a row (zero counts). Re-running a day replaces its row (upsert on
``(bot_id, metric_date)``); the InfluxDB points (measurement ``performance``) overwrite themselves too.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
import sqlalchemy as sa

from marketkeeper.balances import settlement_currency
from marketkeeper.errors import ConfigurationError, MarketkeeperError
from marketkeeper.metrics import RiskFigures, daily_equity, daily_returns, risk_figures
from marketkeeper.repositories.statistics import TradeStatistics, trade_statistics

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from marketkeeper.influxdb import InfluxDBClient
    from marketkeeper.ledger import BotInstance, PerformanceMetrics

log = logging.getLogger(__name__)

#: The InfluxDB measurement the rollups also go to.
PERFORMANCE_MEASUREMENT: Final = "performance"
#: Days of returns behind each day's risk figures, unless told otherwise.
DEFAULT_WINDOW_DAYS: Final = 90
#: Longest range one call rolls up: ten years of days is a typo, not a backfill.
MAX_DAYS: Final = 3660
_NO_RISK = RiskFigures(0, None, None, None, None, None)


class RollupError(MarketkeeperError):
    """A rollup could not be computed; names the bot and the days."""


class BotNotFoundError(RollupError):
    """No bot matches the id or name given."""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def days_between(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end``, both included.

    :raises ConfigurationError: ``end`` is before ``start`` or the range is longer than :data:`MAX_DAYS`.
    """
    if end < start:
        raise ConfigurationError(f"rollup range ends ({end}) before it starts ({start})")
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise ConfigurationError(f"rollup range {start}..{end} has {count} days; at most {MAX_DAYS} per call")
    return [start + timedelta(days=i) for i in range(count)]


@dataclass(frozen=True)
class DayRollup:
    """One bot's figures for one day, as stored in ``performance_metrics``."""

    bot_id: uuid.UUID
    bot_name: str
    metric_date: date
    stats: TradeStatistics
    risk: RiskFigures
    equity: Decimal | None
    equity_currency: str | None

    def row(self) -> dict[str, Any]:
        """The ``performance_metrics`` columns (without ``id`` and ``created_at``)."""
        s, r = self.stats, self.risk
        return {
            "bot_id": self.bot_id,
            "metric_date": self.metric_date,
            "total_trades": s.count,
            "winning_trades": s.wins,
            "losing_trades": s.losses,
            "total_pnl": s.net_pnl,
            "win_rate": float(s.win_rate) if s.win_rate is not None else 0.0,
            "sharpe_ratio": r.sharpe_ratio,
            "max_drawdown": r.max_drawdown,
            "gross_profit": s.gross_profit,
            "gross_loss": s.gross_loss,
            "total_fees": s.fees,
            "avg_win": s.avg_win,
            "avg_loss": s.avg_loss,
            "largest_win": s.largest_win,
            "largest_loss": s.largest_loss,
            "profit_factor": float(s.profit_factor) if s.profit_factor is not None else None,
            "expectancy": s.expectancy,
            "sortino_ratio": r.sortino_ratio,
            "calmar_ratio": r.calmar_ratio,
            "equity": self.equity,
            "equity_currency": self.equity_currency,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (XCom, CLI): ids and decimals as strings."""
        return {
            key: str(value) if isinstance(value, uuid.UUID | Decimal | date) else value
            for key, value in {"bot": self.bot_name, **self.row()}.items()
        }


# --- reading ---------------------------------------------------------------------------------------------


def resolve_bot(session: Session, ref: str | uuid.UUID) -> BotInstance:
    """The bot with id ``ref``, or else the only bot named ``ref``.

    :raises BotNotFoundError: no bot, or several bots of different users, have that name.
    """
    from marketkeeper.ledger import BotInstance

    try:
        bot_id = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        bots = session.scalars(sa.select(BotInstance).where(BotInstance.name == str(ref))).all()
        if len(bots) != 1:
            detail = "no bot has" if not bots else f"{len(bots)} bots (of different users) have"
            raise BotNotFoundError(f"{detail} the name {ref!r}; pass the bot's id") from None
        return bots[0]
    bot = session.get(BotInstance, bot_id)
    if bot is None:
        raise BotNotFoundError(f"no bot has the id {bot_id}")
    return bot


def _executed() -> sa.ColumnElement[bool]:
    from marketkeeper.ledger import Trade, TradeStatus

    return Trade.status.in_((TradeStatus.FILLED, TradeStatus.PARTIALLY_FILLED))


def _equity_currency(session: Session, bot: BotInstance, until: datetime) -> str | None:
    from marketkeeper.ledger import Trade

    configured = (bot.config or {}).get("quote_currency")
    if configured:
        return str(configured).upper()
    symbol = session.scalar(
        sa.select(Trade.symbol)
        .where(Trade.bot_id == bot.id, _executed(), Trade.timestamp < until)
        .order_by(Trade.timestamp.desc())
        .limit(1)
    )
    if symbol is None:
        return None
    try:
        return settlement_currency(symbol)
    except ValueError as exc:
        raise RollupError(f"bot {bot.name} ({bot.id}): {exc}") from exc


def _equity_samples(
    session: Session, bot: BotInstance, currency: str, lower: datetime | None, upper: datetime
) -> pd.Series:
    """Total balances of ``currency`` in ``(lower, upper]``, plus the last one at or before ``lower``."""
    from marketkeeper.ledger import BalanceSnapshot

    account = (
        BalanceSnapshot.user_id == bot.user_id,
        BalanceSnapshot.exchange == bot.exchange,
        BalanceSnapshot.currency == currency,
    )
    query = sa.select(BalanceSnapshot.timestamp, BalanceSnapshot.total_balance).where(
        *account, BalanceSnapshot.timestamp <= upper
    )
    rows = list(session.execute(query.where(BalanceSnapshot.timestamp > lower) if lower else query).all())
    if lower is not None:
        carried = session.execute(
            sa.select(BalanceSnapshot.timestamp, BalanceSnapshot.total_balance)
            .where(*account, BalanceSnapshot.timestamp <= lower)
            .order_by(BalanceSnapshot.timestamp.desc())
            .limit(1)
        ).first()
        if carried is not None:
            rows.append(carried)
    rows.sort(key=lambda r: r[0])
    return pd.Series([r[1] for r in rows], index=pd.DatetimeIndex([r[0] for r in rows], tz="UTC"), dtype=object)


def compute_rollups(
    session: Session, bot: BotInstance, days: Sequence[date], *, window_days: int | None = DEFAULT_WINDOW_DAYS
) -> list[DayRollup]:
    """The figures of ``bot`` for each of ``days`` (consecutive, ascending), without writing anything.

    :raises RollupError: the ledger holds a trade whose symbol has no settlement currency.
    """
    from marketkeeper.ledger import Trade

    if window_days is not None and window_days < 1:
        raise ConfigurationError(f"window_days must be at least 1, got {window_days}")
    first, last = days[0], days[-1]
    start_at, end_at = _midnight(first), _midnight(last + timedelta(days=1))
    trades = session.execute(
        sa.select(Trade.timestamp, Trade.pnl, Trade.fee).where(
            Trade.bot_id == bot.id, _executed(), Trade.timestamp >= start_at, Trade.timestamp < end_at
        )
    ).all()
    by_day: dict[date, list[tuple[Decimal | None, Decimal]]] = defaultdict(list)
    for timestamp, pnl, fee in trades:
        by_day[timestamp.astimezone(UTC).date()].append((pnl, fee))

    currency = _equity_currency(session, bot, end_at)
    samples = pd.Series(dtype=object)
    equity = pd.Series(dtype=float)
    if currency is not None:
        # The first day's window needs the closing equity of the day window_days before it: the last
        # snapshot at or before the window's first midnight is carried in for that.
        lower = _midnight(first - timedelta(days=window_days - 1)) if window_days else None
        samples = _equity_samples(session, bot, currency, lower, end_at)
        equity = daily_equity(samples)

    rollups = []
    for day in days:
        stamp = pd.Timestamp(_midnight(day))
        day_equity: Decimal | None = None
        risk = _NO_RISK
        if stamp in equity.index:
            since = stamp - pd.Timedelta(days=window_days) if window_days else equity.index[0]
            window = equity[(equity.index >= since) & (equity.index <= stamp)]
            # The exact snapshot value, not the float the ratios are computed on.
            day_equity = samples[samples.index <= stamp + pd.Timedelta(days=1)].iloc[-1]
            try:
                risk = risk_figures(daily_returns(window))
            except ValueError as exc:
                raise RollupError(f"bot {bot.name} ({bot.id}) on {day}: {exc}") from exc
        rollups.append(
            DayRollup(
                bot_id=bot.id,
                bot_name=bot.name,
                metric_date=day,
                stats=trade_statistics(by_day.get(day, ())),
                risk=risk,
                equity=day_equity,
                equity_currency=currency,
            )
        )
    return rollups


# --- writing ---------------------------------------------------------------------------------------------


def upsert_rollups(session: Session, rollups: Iterable[DayRollup]) -> int:
    """Insert or replace the ``performance_metrics`` rows of ``rollups``; returns how many were written."""
    from sqlalchemy.dialects import postgresql, sqlite

    from marketkeeper.ledger import PerformanceMetrics, utcnow

    now = utcnow()
    rows = [{"id": uuid.uuid4(), "created_at": now, **r.row()} for r in rollups]
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    keep = ("id", "bot_id", "metric_date")
    if dialect == "postgresql":
        pg = postgresql.insert(PerformanceMetrics)
        upsert: sa.Executable = pg.on_conflict_do_update(
            index_elements=["bot_id", "metric_date"], set_={k: pg.excluded[k] for k in rows[0] if k not in keep}
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(PerformanceMetrics)
        upsert = lite.on_conflict_do_update(
            index_elements=["bot_id", "metric_date"], set_={k: lite.excluded[k] for k in rows[0] if k not in keep}
        )
    else:
        raise ConfigurationError(f"rollups need PostgreSQL or SQLite, not {dialect}")
    session.execute(upsert, rows)
    return len(rows)


def performance_lines(rollups: Iterable[DayRollup]) -> list[str]:
    """The rollups as line protocol of measurement ``performance`` (tags: bot_id, bot), stamped at midnight
    UTC of the day; money as floats, figures that are undefined left out."""
    from marketkeeper.influxdb import Point

    lines = []
    for rollup in rollups:
        fields = {
            key: value
            for key, value in rollup.row().items()
            if key not in ("bot_id", "metric_date", "equity_currency") and value is not None
        }
        tags = {"bot_id": str(rollup.bot_id), "bot": rollup.bot_name, "currency": rollup.equity_currency or ""}
        lines.append(Point(PERFORMANCE_MEASUREMENT, fields, tags, _midnight(rollup.metric_date)).to_line())
    return lines


def rollup_bot(
    engine: Engine,
    bot: str | uuid.UUID,
    start: date,
    end: date,
    *,
    window_days: int | None = DEFAULT_WINDOW_DAYS,
    influxdb: InfluxDBClient | None = None,
) -> list[DayRollup]:
    """Roll up ``bot`` for every day from ``start`` to ``end`` (both included) into the ledger, and InfluxDB.

    :param engine: the ledger.
    :param bot: the bot's id, or its name when that is unique.
    :param start: the first day (UTC).
    :param end: the last day (UTC), included.
    :param window_days: days of returns behind the risk figures; ``None`` for all history.
    :param influxdb: also write measurement ``performance`` there.
    :raises BotNotFoundError: no such bot.
    :raises ConfigurationError: a malformed range or window.
    """
    from marketkeeper.ledger import session_scope

    days = days_between(start, end)
    with session_scope(engine) as session:
        found = resolve_bot(session, bot)
        rollups = compute_rollups(session, found, days, window_days=window_days)
        upsert_rollups(session, rollups)
    if influxdb is not None:
        influxdb.write_lines(performance_lines(rollups))
    log.info("bot %s (%s): rolled up %d days %s..%s", found.name, found.id, len(rollups), start, end)
    return rollups


def list_bot_ids(engine: Engine, refs: Sequence[str] = ()) -> list[str]:
    """The ids of the bots ``refs`` name (ids or unique names), or of every bot when ``refs`` is empty.

    :raises BotNotFoundError: a ref matches no bot.
    """
    from marketkeeper.ledger import BotInstance, session_scope

    with session_scope(engine) as session:
        if refs:
            return [str(resolve_bot(session, ref.strip()).id) for ref in refs if ref.strip()]
        return [str(i) for i in session.scalars(sa.select(BotInstance.id).order_by(BotInstance.created_at))]


def latest_performance(session: Session, bot_id: uuid.UUID) -> PerformanceMetrics:
    """The bot's most recent ``performance_metrics`` row.

    :raises RollupError: the bot was never rolled up.
    """
    from marketkeeper.ledger import PerformanceMetrics

    row = session.scalars(
        sa.select(PerformanceMetrics)
        .where(PerformanceMetrics.bot_id == bot_id)
        .order_by(PerformanceMetrics.metric_date.desc())
        .limit(1)
    ).first()
    if row is None:
        raise RollupError(f"bot {bot_id} has no performance rows: run `marketkeeper rollup` first")
    return row
