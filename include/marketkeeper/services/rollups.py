"""Use case: roll bots' performance up over a range of days, into the ledger and (when configured) InfluxDB.

``marketkeeper rollup`` calls :func:`rollup_bot`; the ``performance_rollups`` tasks call :func:`bot_ids` to
plan and :func:`rollup_bot` per bot; :func:`rollup_bots` does both in one call. The figures and their
conventions are :mod:`marketkeeper.rollups`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from marketkeeper.repositories import unit_of_work
from marketkeeper.rollups import (
    DEFAULT_WINDOW_DAYS,
    DayRollup,
    compute_rollups,
    days_between,
    performance_lines,
    resolve_bot,
)
from marketkeeper.store_set import StoreConfig, StoreSet

__all__ = ["RollupReport", "bot_ids", "rollup_bot", "rollup_bots"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollupReport:
    """What rolling one bot up over ``first..last`` wrote: one :class:`DayRollup` per day, oldest first.

    Like a :class:`~marketkeeper.repositories.Page`, the report iterates, indexes and measures as its days.

    :ivar window_days: the days of returns behind the risk figures; ``None``: all history.
    :ivar influxdb_points: ``performance`` points written (0 when InfluxDB is not configured).
    """

    bot_id: uuid.UUID
    bot_name: str
    first: date
    last: date
    window_days: int | None
    days: tuple[DayRollup, ...]
    influxdb_points: int = 0

    def __len__(self) -> int:
        return len(self.days)

    def __iter__(self) -> Iterator[DayRollup]:
        return iter(self.days)

    def __getitem__(self, index: int) -> DayRollup:
        return self.days[index]

    @property
    def trades(self) -> int:
        """Closed trades over the whole range."""
        return sum(day.stats.count for day in self.days)

    @property
    def latest(self) -> DayRollup:
        """The last day's figures."""
        return self.days[-1]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (XCom): ids, days and decimals as strings; the last day's row under ``latest``."""
        return {
            "bot_id": str(self.bot_id),
            "bot": self.bot_name,
            "start": self.first.isoformat(),
            "end": self.last.isoformat(),
            "days": len(self.days),
            "window_days": self.window_days,
            "trades": self.trades,
            "latest": self.latest.as_dict(),
            "influxdb_points": self.influxdb_points,
        }


def bot_ids(config: StoreConfig, refs: Sequence[str | uuid.UUID] = ()) -> list[str]:
    """The ids of the bots ``refs`` name (ids or unique names; blanks ignored), or of every bot, oldest first,
    when ``refs`` is empty.

    :raises BotNotFoundError: a ref matches no single bot.
    """
    wanted = [ref.strip() if isinstance(ref, str) else ref for ref in refs]
    wanted = [ref for ref in wanted if ref]
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        if wanted:
            return [str(resolve_bot(repos, ref).id) for ref in wanted]
        return [str(bot_id) for bot_id in repos.bots.ids()]


def rollup_bot(
    config: StoreConfig,
    bot_ref: str | uuid.UUID,
    first: date,
    last: date,
    *,
    window_days: int | None = DEFAULT_WINDOW_DAYS,
) -> RollupReport:
    """Roll up ``bot_ref`` for every day from ``first`` to ``last`` (both included) into the ledger, and into
    InfluxDB (measurement ``performance``) when configured. Re-running a day replaces its row and points.

    :param config: where the stores are.
    :param bot_ref: the bot's id, or its name when that is unique.
    :param first: the first day (UTC).
    :param last: the last day (UTC), included.
    :param window_days: days of returns behind the risk figures; ``None`` for all history.
    :raises BotNotFoundError: no such bot.
    :raises ConfigurationError: a malformed range or window.
    :raises RollupError: the bot's trades or equity cannot be rolled up.
    """
    days = days_between(first, last)
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        bot = resolve_bot(repos, bot_ref)
        rollups = compute_rollups(repos, bot, days, window_days=window_days)
        repos.performance.upsert_days(bot.id, (r.row() for r in rollups))
        bot_id, bot_name = bot.id, bot.name
    points = 0
    if config.influxdb is not None:
        with config.influxdb() as influxdb:
            points = influxdb.write_lines(performance_lines(rollups))
    log.info("bot %s (%s): rolled up %d days %s..%s", bot_name, bot_id, len(rollups), first, last)
    return RollupReport(bot_id, bot_name, first, last, window_days, tuple(rollups), points)


def rollup_bots(
    config: StoreConfig,
    bots: Sequence[str | uuid.UUID],
    first: date,
    last: date,
    *,
    window_days: int | None = DEFAULT_WINDOW_DAYS,
) -> list[RollupReport]:
    """Roll up each bot ``bots`` names (ids or unique names; empty: every bot) over ``first..last``, one unit
    of work per bot, as :func:`rollup_bot`.

    :raises BotNotFoundError: a ref matches no single bot (before anything is written).
    :raises ConfigurationError: a malformed range or window.
    """
    days_between(first, last)
    return [rollup_bot(config, bot_id, first, last, window_days=window_days) for bot_id in bot_ids(config, bots)]
