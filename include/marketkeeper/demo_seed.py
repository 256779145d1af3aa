"""Seed the ledger with one demo user and paper bot: synthetic round-trip trades and hourly balance snapshots.

Deterministic for a seed, and idempotent: the bot remembers the seed, trade count and last day it was seeded
with (``config["demo"]``), trade ids are derived from them, and the snapshots of the seeded range are replaced,
so running it again adds nothing. Everything goes through the caller's unit of work; seeding and rolling the
bot up end to end is the use case :func:`marketkeeper.services.demo.seed_demo` (``marketkeeper demo-seed``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from marketkeeper.balances import paper_balances

if TYPE_CHECKING:
    from marketkeeper.ledger import BotInstance
    from marketkeeper.repositories import Repositories

DEMO_USERNAME: Final = "demo"
DEMO_BOT_NAME: Final = "demo-paper"
#: The paper bot's ``exchange`` label: its balance snapshots are recorded under it.
DEMO_EXCHANGE: Final = "paper"
DEMO_SYMBOL: Final = "BTC/USDT"
DEMO_CURRENCY: Final = "USDT"
STARTING_CAPITAL: Final = Decimal(10_000)
FEE_RATE: Final = Decimal("0.0004")
#: No hash any password check accepts: the demo user cannot log in.
_NO_LOGIN: Final = "!"
_NAMESPACE: Final = uuid.UUID("5b0f8f5e-2f0c-4a53-9d7a-8f0b7a1c6d21")


@dataclass(frozen=True)
class DemoSeed:
    """What :func:`seed_paper_bot` left in the ledger."""

    user_id: uuid.UUID
    bot_id: uuid.UUID
    first_day: date
    last_day: date
    trades_added: int
    trades_total: int
    snapshots: int


def _quantize(value: float, places: str) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal(places))


def synthetic_trades(
    bot_id: uuid.UUID, *, n_trades: int, seed: int, first_day: date, days: int
) -> list[dict[str, Any]]:
    """``n_trades`` fills of ``BTC/USDT`` over ``days`` days: buy/sell round trips, P&L on the selling fill.

    Prices follow a seeded random walk around 60,000; each fill pays a 0.04% fee in USDT. Ids are derived
    from the bot, seed and position, so the same arguments give the same rows.
    """
    from marketkeeper.ledger import OrderType, TradeSide, TradeStatus

    rng = np.random.default_rng(seed)
    start = datetime.combine(first_day, time(), tzinfo=UTC)
    seconds = np.sort(rng.uniform(0, days * 86_400, size=n_trades))
    price = 60_000.0
    rows: list[dict[str, Any]] = []
    entry = Decimal(0)
    quantity = Decimal(0)
    for i, offset in enumerate(seconds):
        # A small positive drift: the demo bot wins a little more often than it loses.
        price *= 1 + rng.normal(0.001, 0.006)
        executed = _quantize(price, "0.01")
        opening = i % 2 == 0
        if opening:
            quantity = _quantize(float(rng.uniform(0.01, 0.05)), "0.0001")
            entry = executed
        pnl = None if opening else (executed - entry) * quantity
        rows.append(
            {
                "id": uuid.uuid5(_NAMESPACE, f"{bot_id}:{seed}:{i}"),
                "bot_id": bot_id,
                "symbol": DEMO_SYMBOL,
                "exchange": DEMO_EXCHANGE,
                "side": TradeSide.BUY if opening else TradeSide.SELL,
                "order_type": OrderType.MARKET,
                "quantity": quantity,
                "price": executed,
                "executed_price": executed,
                "fee": (executed * quantity * FEE_RATE).quantize(Decimal("0.00000001")),
                "pnl": pnl,
                "status": TradeStatus.FILLED,
                "timestamp": start + timedelta(seconds=float(offset)),
            }
        )
    return rows


def _demo_bot(repos: Repositories, *, n_trades: int, seed: int, last_day: date) -> BotInstance:
    user, _ = repos.users.get_or_create(DEMO_USERNAME, email="demo@example.com", password_hash=_NO_LOGIN)
    bot, _ = repos.bots.get_or_create(
        user.id,
        DEMO_BOT_NAME,
        strategy_type="demo",
        exchange=DEMO_EXCHANGE,
        config={
            "quote_currency": DEMO_CURRENCY,
            "demo": {"seed": seed, "n_trades": n_trades, "last_day": last_day.isoformat()},
        },
    )
    return bot


def seed_paper_bot(
    repos: Repositories, *, n_trades: int = 300, seed: int = 7, last_day: date | None = None
) -> DemoSeed:
    """Create (or complete) the demo user, its paper bot, the bot's trades and its hourly balance snapshots.

    A bot seeded before keeps its original seed, trade count and days: the arguments only shape a new bot.

    :param repos: the unit of work over the ledger (migrated).
    :param n_trades: fills to create (at least 2); they span ``max(7, n_trades // 10)`` days.
    :param seed: the random seed.
    :param last_day: the last seeded day (UTC); default yesterday, so the day is complete.
    :raises ValueError: ``n_trades`` is below 2.
    """
    if n_trades < 2:
        raise ValueError(f"n_trades must be at least 2 (one round trip), got {n_trades}")
    default_last = datetime.now(UTC).date() - timedelta(days=1)
    bot = _demo_bot(repos, n_trades=n_trades, seed=seed, last_day=last_day or default_last)
    params = bot.config["demo"]
    n_trades, seed = int(params["n_trades"]), int(params["seed"])
    last = date.fromisoformat(params["last_day"])
    days = max(7, n_trades // 10)
    first = last - timedelta(days=days - 1)
    trades = synthetic_trades(bot.id, n_trades=n_trades, seed=seed, first_day=first, days=days)

    existing = repos.trades.ids_by_bot(bot.id)
    missing = [row for row in trades if row["id"] not in existing]
    repos.trades.bulk_create(missing)

    # Hourly snapshots stamped at each hour's end, from the trades before that instant: what the
    # balance_snapshots DAG would have recorded for a paper account with the same starting capital. The
    # first, at the first day's midnight, is the starting capital: the base of the first day's return.
    start_at = datetime.combine(first, time(), tzinfo=UTC)
    end_at = start_at + timedelta(days=days)
    repos.balances.delete_between(bot.user_id, DEMO_EXCHANGE, start=start_at, end=end_at)
    done: list[tuple[str, Decimal | None, Decimal]] = []
    position = 0
    rows: list[dict[str, Any]] = []
    for hour in range(days * 24 + 1):
        at = start_at + timedelta(hours=hour)
        while position < len(trades) and trades[position]["timestamp"] < at:
            row = trades[position]
            done.append((row["symbol"], row["pnl"], row["fee"]))
            position += 1
        rows.extend(
            {"user_id": bot.user_id, "exchange": DEMO_EXCHANGE, "timestamp": at, **balance.row()}
            for balance in paper_balances({DEMO_CURRENCY: STARTING_CAPITAL}, done)
        )
    snapshots = repos.balances.bulk_create(rows)
    return DemoSeed(
        user_id=bot.user_id,
        bot_id=bot.id,
        first_day=first,
        last_day=last,
        trades_added=len(missing),
        trades_total=len(existing) + len(missing),
        snapshots=len(snapshots),
    )
