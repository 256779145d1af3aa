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

Everything here reads and writes through the caller's unit of work (:mod:`marketkeeper.repositories`); rolling
a bot up end to end is the use case :func:`marketkeeper.services.rollups.rollup_bot`.
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

from marketkeeper.balances import settlement_currency
from marketkeeper.errors import ConfigurationError, MarketkeeperError
from marketkeeper.metrics import RiskFigures, daily_equity, daily_returns, risk_figures
from marketkeeper.repositories.bots import AmbiguousBotNameError
from marketkeeper.repositories.errors import NotFoundError
from marketkeeper.repositories.statistics import TradeStatistics, trade_statistics

if TYPE_CHECKING:
    from marketkeeper.ledger import BotInstance
    from marketkeeper.repositories import Repositories

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


def resolve_bot(repos: Repositories, ref: str | uuid.UUID) -> BotInstance:
    """The bot with id ``ref``, or else the only bot named ``ref``.

    :raises BotNotFoundError: no bot, or several bots of different users, have that name.
    """
    try:
        return repos.bots.resolve(ref)
    except AmbiguousBotNameError as exc:
        detail = f"{exc.count} bots (of different users) have"
        raise BotNotFoundError(f"{detail} the name {ref!r}; pass the bot's id") from None
    except NotFoundError as exc:
        if exc.field == "name":
            raise BotNotFoundError(f"no bot has the name {ref!r}; pass the bot's id") from None
        raise BotNotFoundError(f"no bot has the id {exc.key}") from None


def _equity_currency(repos: Repositories, bot: BotInstance, until: datetime) -> str | None:
    configured = (bot.config or {}).get("quote_currency")
    if configured:
        return str(configured).upper()
    symbol = repos.trades.latest_executed_symbol(bot.id, before=until)
    if symbol is None:
        return None
    try:
        return settlement_currency(symbol)
    except ValueError as exc:
        raise RollupError(f"bot {bot.name} ({bot.id}): {exc}") from exc


def _equity_samples(
    repos: Repositories, bot: BotInstance, currency: str, lower: datetime | None, upper: datetime
) -> pd.Series:
    """Total balances of ``currency`` in ``(lower, upper]``, plus the last one at or before ``lower``."""
    rows = repos.balances.total_series(bot.user_id, bot.exchange, currency, since=lower, until=upper)
    return pd.Series([r[1] for r in rows], index=pd.DatetimeIndex([r[0] for r in rows], tz="UTC"), dtype=object)


def compute_rollups(
    repos: Repositories, bot: BotInstance, days: Sequence[date], *, window_days: int | None = DEFAULT_WINDOW_DAYS
) -> list[DayRollup]:
    """The figures of ``bot`` for each of ``days`` (consecutive, ascending), without writing anything.

    :raises ConfigurationError: no days, or a window shorter than a day.
    :raises RollupError: the ledger holds a trade whose symbol has no settlement currency.
    """
    if window_days is not None and window_days < 1:
        raise ConfigurationError(f"window_days must be at least 1, got {window_days}")
    if not days:
        raise ConfigurationError(f"bot {bot.name} ({bot.id}): no days to roll up")
    first, last = days[0], days[-1]
    start_at, end_at = _midnight(first), _midnight(last + timedelta(days=1))
    by_day: dict[date, list[tuple[Decimal | None, Decimal]]] = defaultdict(list)
    for trade in repos.trades.executed(bot.id, start=start_at, end=end_at):
        by_day[trade.timestamp.astimezone(UTC).date()].append((trade.pnl, trade.fee))

    currency = _equity_currency(repos, bot, end_at)
    samples = pd.Series(dtype=object)
    equity = pd.Series(dtype=float)
    if currency is not None:
        # The first day's window needs the closing equity of the day window_days before it: the last
        # snapshot at or before the window's first midnight is carried in for that.
        lower = _midnight(first - timedelta(days=window_days - 1)) if window_days else None
        samples = _equity_samples(repos, bot, currency, lower, end_at)
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


# --- InfluxDB ----------------------------------------------------------------------------------------------


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
