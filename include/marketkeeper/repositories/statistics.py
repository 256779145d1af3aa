"""Trade statistics of a bot over a window: counts, win rate, gross and net P&L, fees, profit factor, expectancy.

Conventions (the rollups and the CSV export follow them too):

* A trade is *closed* when its ``pnl`` is set: ``pnl`` is the realized result of that execution **before
  fees**. Trades with ``pnl`` NULL (opening fills, pending orders) are not closed; they are counted in
  ``open_count`` and left out of every P&L figure except fees.
* ``fees`` is the sum of ``fee`` over **every** trade in the window, closed or not, because opening fills pay
  fees too; ``net_pnl = gross_profit + gross_loss - fees`` is what the account actually gained, and it is
  what ``TradeRepository.total_pnl`` returns.
* A win has ``pnl > 0``, a loss ``pnl < 0``; a breakeven (``pnl == 0``) is closed but neither, so
  ``win_rate = wins / count`` counts it against the win rate.
* Losses keep their sign: ``gross_loss``, ``avg_loss`` and ``largest_loss`` are zero or negative.
* Ratios are ``None`` where they are undefined: ``win_rate`` and ``expectancy`` without closed trades,
  averages and extremes without wins (losses), ``profit_factor = gross_profit / |gross_loss|`` without losses.
* ``expectancy = net_pnl / count``: the average net result of a closed trade, fees included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, localcontext

_ZERO = Decimal(0)
# NUMERIC(38, 18) values have up to 38 digits; sums must not round at Decimal's default 28.
_SUM_PRECISION = 80


@dataclass(frozen=True)
class TradeStatistics:
    """Aggregated results of a bot's trades over a window; see the module docstring for the conventions."""

    count: int
    wins: int
    losses: int
    open_count: int
    win_rate: Decimal | None
    gross_profit: Decimal
    gross_loss: Decimal
    fees: Decimal
    net_pnl: Decimal
    avg_win: Decimal | None
    avg_loss: Decimal | None
    largest_win: Decimal | None
    largest_loss: Decimal | None
    profit_factor: Decimal | None
    expectancy: Decimal | None

    @property
    def breakeven(self) -> int:
        """Closed trades with ``pnl == 0``."""
        return self.count - self.wins - self.losses

    @classmethod
    def from_totals(
        cls,
        *,
        count: int,
        wins: int,
        losses: int,
        open_count: int,
        gross_profit: Decimal,
        gross_loss: Decimal,
        fees: Decimal,
        largest_win: Decimal | None,
        largest_loss: Decimal | None,
    ) -> TradeStatistics:
        """The statistics from the sums a database (or :func:`trade_statistics`) computed.

        :param count: closed trades (``pnl`` set).
        :param gross_profit: sum of positive ``pnl``; ``gross_loss`` the sum of negative ones (<= 0).
        :param fees: sum of ``fee`` over every trade in the window, closed or not.
        """
        with localcontext() as context:
            context.prec = _SUM_PRECISION
            net = gross_profit + gross_loss - fees
        return cls(
            count=count,
            wins=wins,
            losses=losses,
            open_count=open_count,
            win_rate=Decimal(wins) / Decimal(count) if count else None,
            gross_profit=gross_profit,
            gross_loss=gross_loss,
            fees=fees,
            net_pnl=net,
            avg_win=gross_profit / wins if wins else None,
            avg_loss=gross_loss / losses if losses else None,
            largest_win=largest_win,
            largest_loss=largest_loss,
            profit_factor=gross_profit / -gross_loss if losses else None,
            expectancy=net / count if count else None,
        )


def trade_statistics(trades: Iterable[tuple[Decimal | None, Decimal]]) -> TradeStatistics:
    """The statistics of ``(pnl, fee)`` pairs, summed exactly in Python (one pass, constant memory).

    :param trades: one pair per trade in the window; ``pnl`` None for a trade that is not closed.
    """
    count = wins = losses = open_count = 0
    gross_profit = gross_loss = fees = _ZERO
    largest_win: Decimal | None = None
    largest_loss: Decimal | None = None
    with localcontext() as context:
        context.prec = _SUM_PRECISION
        for pnl, fee in trades:
            fees += fee
            if pnl is None:
                open_count += 1
                continue
            count += 1
            if pnl > 0:
                wins += 1
                gross_profit += pnl
                largest_win = pnl if largest_win is None else max(largest_win, pnl)
            elif pnl < 0:
                losses += 1
                gross_loss += pnl
                largest_loss = pnl if largest_loss is None else min(largest_loss, pnl)
    return TradeStatistics.from_totals(
        count=count,
        wins=wins,
        losses=losses,
        open_count=open_count,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        fees=fees,
        largest_win=largest_win,
        largest_loss=largest_loss,
    )
