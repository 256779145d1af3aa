"""The performance figures: hand-computed cases on small series, then agreement with empyrical on random ones.

Trade statistics come from :mod:`marketkeeper.repositories.statistics` (the rollups reuse it); the cases here pin
the figures a rollup row gets for each scenario.
"""

from __future__ import annotations

import math
from decimal import Decimal

import empyrical  # test-only reference, pinned in requirements-dev.txt
import numpy as np
import pandas as pd
import pytest

from marketkeeper import metrics
from marketkeeper.metrics import (
    PERIODS_PER_YEAR,
    annual_return,
    calmar_ratio,
    daily_equity,
    daily_returns,
    downside_deviation,
    max_drawdown,
    risk_figures,
    sharpe_ratio,
    sortino_ratio,
)
from marketkeeper.repositories.statistics import trade_statistics

D = Decimal


def _returns(*equity: float) -> pd.Series:
    days = pd.date_range("2024-01-01", periods=len(equity), freq="D", tz="UTC")
    return daily_returns(pd.Series(equity, index=days))


# --- hand-computed cases -----------------------------------------------------------------------------------


def test_all_wins() -> None:
    stats = trade_statistics([(D(10), D(1)), (D(20), D(1)), (D(30), D(1))])

    assert (stats.count, stats.wins, stats.losses) == (3, 3, 0)
    assert stats.win_rate == 1
    assert (stats.gross_profit, stats.gross_loss, stats.net_pnl, stats.fees) == (D(60), D(0), D(57), D(3))
    assert (stats.avg_win, stats.largest_win, stats.expectancy) == (D(20), D(30), D(19))  # 57 net / 3 trades
    assert stats.avg_loss is None and stats.largest_loss is None
    assert stats.profit_factor is None  # no loss to divide by: undefined, not infinite

    # Equity up 10% every day: no dispersion and no downside, so neither ratio is defined; no drawdown.
    figures = risk_figures(_returns(100, 110, 121))
    assert figures.sharpe_ratio is None
    assert figures.sortino_ratio is None
    assert figures.max_drawdown == 0.0
    assert figures.calmar_ratio is None


def test_all_losses() -> None:
    stats = trade_statistics([(D(-5), D("0.5")), (D(-15), D("0.5"))])

    assert (stats.count, stats.wins, stats.losses) == (2, 0, 2)
    assert stats.win_rate == 0
    assert (stats.gross_profit, stats.gross_loss, stats.net_pnl) == (D(0), D(-20), D(-21))
    assert (stats.avg_loss, stats.largest_loss, stats.expectancy) == (D(-10), D(-15), D("-10.5"))
    assert stats.profit_factor == 0

    # Equity down 10% a day: r = [-0.1, -0.1].
    returns = _returns(100, 90, 81)
    assert sharpe_ratio(returns) is None  # zero deviation
    # downside = sqrt(mean([0.01, 0.01])) * sqrt(365) = 0.1 * sqrt(365); mean * 365 = -36.5
    assert downside_deviation(returns) == pytest.approx(0.1 * math.sqrt(365))
    assert sortino_ratio(returns) == pytest.approx(-36.5 / (0.1 * math.sqrt(365)))
    assert max_drawdown(returns) == pytest.approx(-0.19)  # 81 / 100 - 1
    # CAGR over 2 days of 365: 0.81 ** 182.5 - 1, divided by |-0.19|.
    assert calmar_ratio(returns) == pytest.approx((0.81**182.5 - 1) / 0.19)


def test_flat_equity() -> None:
    returns = _returns(100, 100, 100, 100)

    assert list(returns) == [0.0, 0.0, 0.0]
    assert sharpe_ratio(returns) is None
    assert sortino_ratio(returns) is None
    assert max_drawdown(returns) == 0.0
    assert calmar_ratio(returns) is None
    assert annual_return(returns) == 0.0


def test_a_single_trade() -> None:
    stats = trade_statistics([(None, D("0.1")), (D("12.5"), D("0.1"))])  # opening and closing fill both pay

    assert (stats.count, stats.open_count, stats.wins, stats.win_rate) == (1, 1, 1, 1)
    assert (stats.net_pnl, stats.expectancy, stats.largest_win) == (D("12.3"), D("12.3"), D("12.5"))

    one_return = _returns(100, 112.3)
    assert sharpe_ratio(one_return) is None  # a deviation needs two returns
    assert sortino_ratio(one_return) is None
    assert max_drawdown(one_return) == 0.0


def test_no_trades() -> None:
    stats = trade_statistics([])

    assert (stats.count, stats.win_rate, stats.net_pnl) == (0, None, D(0))
    assert stats.expectancy is None and stats.profit_factor is None


def test_breakeven_trade_counts_but_is_neither_win_nor_loss() -> None:
    stats = trade_statistics([(D(4), D(0)), (D(0), D(0)), (D(-2), D(0)), (D(-2), D(0))])

    assert (stats.count, stats.wins, stats.losses) == (4, 1, 2)
    assert stats.win_rate == D("0.25")
    assert stats.profit_factor == 1  # 4 / |-4|
    assert stats.expectancy == D(0)


def test_a_drawdown_that_recovers() -> None:
    # 100 -> 120 -> 90 -> 130: r = [0.2, -0.25, 4/9]; the trough is 25% under the 120 peak, then a new high.
    returns = _returns(100, 120, 90, 130)
    r = [0.2, -0.25, 4 / 9]
    mean = sum(r) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)  # sample deviation, ddof=1

    assert max_drawdown(returns) == pytest.approx(-0.25)
    assert list(metrics.drawdowns(returns)) == pytest.approx([0.0, -0.25, 0.0])
    assert sharpe_ratio(returns) == pytest.approx(mean / std * math.sqrt(365))
    # Only the -0.25 day is below target: downside = sqrt(0.0625 / 3) per day.
    assert sortino_ratio(returns) == pytest.approx(mean * 365 / (math.sqrt(0.0625 / 3) * math.sqrt(365)))
    # With 3 periods a year the three days are one year: CAGR = 130/100 - 1 = 0.3, Calmar = 0.3 / 0.25.
    assert annual_return(returns, periods=3) == pytest.approx(0.3)
    assert calmar_ratio(returns, periods=3) == pytest.approx(1.2)


def test_risk_free_rate_is_subtracted_per_period() -> None:
    returns = _returns(100, 101, 101, 103)

    excess = np.array([0.01, 0.0, 2 / 101]) - 0.001
    assert sharpe_ratio(returns, risk_free=0.001) == pytest.approx(excess.mean() / excess.std(ddof=1) * math.sqrt(365))


def test_a_loss_on_the_first_day_is_a_drawdown() -> None:
    assert max_drawdown(_returns(100, 80, 100)) == pytest.approx(-0.2)


# --- the daily equity curve ------------------------------------------------------------------------------


def test_daily_equity_takes_the_last_sample_and_forward_fills_missing_days() -> None:
    samples = pd.Series(
        [D(100), D(105), D(110), D(120)],
        index=pd.DatetimeIndex(
            [
                "2024-01-01T10:00Z",
                "2024-01-02T00:00Z",  # midnight closes Jan 1
                "2024-01-02T05:00Z",
                "2024-01-04T23:00Z",  # nothing on Jan 3: carried forward
            ]
        ),
    )

    equity = daily_equity(samples)

    assert list(equity.index.strftime("%Y-%m-%d")) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert list(equity) == [105.0, 110.0, 110.0, 120.0]
    assert list(daily_returns(equity)) == pytest.approx([110 / 105 - 1, 0.0, 120 / 110 - 1])


def test_daily_equity_extends_to_an_end_day_and_refuses_naive_times() -> None:
    samples = pd.Series([1.0], index=pd.DatetimeIndex(["2024-01-01T12:00Z"]))

    assert len(daily_equity(samples, end=pd.Timestamp("2024-01-05"))) == 5
    with pytest.raises(ValueError, match="timezone-aware"):
        daily_equity(pd.Series([1.0], index=pd.DatetimeIndex(["2024-01-01T12:00"])))


def test_non_positive_equity_has_no_returns() -> None:
    with pytest.raises(ValueError, match="positive"):
        _returns(100, 0, 50)


# --- against empyrical (the maintained reference) --------------------------------------------------------


def _random_returns(seed: int, days: int = 250) -> pd.Series:
    rng = np.random.default_rng(seed)
    # Fat-ish tails and some exactly-flat days, like a bot that sits out.
    values = rng.standard_t(df=4, size=days) * 0.02 + 0.0005
    values[rng.random(days) < 0.1] = 0.0
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=days, freq="D", tz="UTC"))


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_empyrical_on_random_series(seed: int) -> None:
    returns = _random_returns(seed)
    ann = PERIODS_PER_YEAR

    assert sharpe_ratio(returns) == pytest.approx(empyrical.sharpe_ratio(returns, annualization=ann), rel=1e-9)
    assert sharpe_ratio(returns, risk_free=0.0002) == pytest.approx(
        empyrical.sharpe_ratio(returns, risk_free=0.0002, annualization=ann), rel=1e-9
    )
    assert sortino_ratio(returns) == pytest.approx(empyrical.sortino_ratio(returns, annualization=ann), rel=1e-9)
    assert downside_deviation(returns) == pytest.approx(empyrical.downside_risk(returns, annualization=ann), rel=1e-9)
    assert max_drawdown(returns) == pytest.approx(empyrical.max_drawdown(returns), rel=1e-9)
    assert annual_return(returns) == pytest.approx(empyrical.annual_return(returns, annualization=ann), rel=1e-9)
    assert calmar_ratio(returns) == pytest.approx(empyrical.calmar_ratio(returns, annualization=ann), rel=1e-9)


def test_agrees_with_empyrical_on_a_series_built_from_equity() -> None:
    rng = np.random.default_rng(42)
    equity = pd.Series(
        10_000 * np.cumprod(1 + rng.normal(0.001, 0.015, 120)),
        index=pd.date_range("2024-01-01", periods=120, freq="D", tz="UTC"),
    )
    returns = daily_returns(equity)

    assert max_drawdown(returns) == pytest.approx(float((equity / equity.cummax() - 1).min()), rel=1e-9)
    assert max_drawdown(returns) == pytest.approx(empyrical.max_drawdown(returns), rel=1e-9)
    assert sharpe_ratio(returns) == pytest.approx(empyrical.sharpe_ratio(returns, annualization=365), rel=1e-9)


def test_where_empyrical_says_nan_or_inf_we_say_none() -> None:
    short = _returns(100, 110)
    rising = _returns(100, 110, 121, 150)

    assert math.isnan(empyrical.sharpe_ratio(short, annualization=365)) and sharpe_ratio(short) is None
    assert math.isinf(empyrical.sortino_ratio(rising, annualization=365)) and sortino_ratio(rising) is None
    assert math.isnan(empyrical.calmar_ratio(rising, annualization=365)) and calmar_ratio(rising) is None
