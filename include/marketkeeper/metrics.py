"""Risk figures of a trading bot: pure functions on its daily equity curve (Sharpe, Sortino, drawdown, Calmar).

Trade statistics (win rate, profit factor, expectancy...) are :mod:`marketkeeper.repositories.statistics`.

Conventions (the same as empyrical, the reference the tests compare against):

* **Daily returns.** Equity is sampled once per UTC day (its last value of the day); a day without a sample
  carries the previous day's equity forward, so it is a zero-return day, and zero-return days are kept (dropping
  them would overstate both mean and volatility). Returns are simple: ``equity[d] / equity[d-1] - 1``.
* **Annualization.** Crypto trades every day of the year, so ratios are annualized with **365** periods.
* **Drawdown** is measured on equity, as a fraction of the running peak, and is **non-positive**: ``-0.25``
  means equity fell 25% below its peak; ``0.0`` means it never fell.
* A ratio that is undefined (fewer than two returns, zero dispersion, no drawdown, no losing day) is ``None``,
  never ``inf`` or ``NaN``: it is stored as NULL and charted as a gap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

#: Periods per year for daily returns: crypto markets never close.
PERIODS_PER_YEAR: Final = 365


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _as_float_array(returns: pd.Series | Iterable[float]) -> np.ndarray:
    array = np.asarray(list(returns) if not isinstance(returns, pd.Series) else returns.to_numpy(), dtype=float)
    if np.isnan(array).any():
        raise ValueError("returns contain NaN: build them with daily_returns(), which forward-fills missing days")
    return array


def daily_equity(samples: pd.Series, *, end: pd.Timestamp | None = None) -> pd.Series:
    """Resample equity samples to one value per UTC day: the last sample of each day, forward-filled.

    A sample stamped exactly at midnight belongs to the day that ends there (snapshots are stamped at the end
    of their interval, so the ``00:00`` snapshot is the closing balance of the previous day).

    :param samples: equity values (any numeric, ``Decimal`` included) indexed by aware timestamps.
    :param end: the last day to include (a date-like); days after the last sample up to it are forward-filled.
    :return: float equity indexed by UTC midnight of each day, from the first sampled day on; empty if no samples.
    :raises ValueError: the index is not timezone-aware.
    """
    if samples.empty:
        return pd.Series(dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
    index = pd.DatetimeIndex(samples.index)
    if index.tz is None:
        raise ValueError("equity samples need timezone-aware timestamps")
    # Subtracting one nanosecond before flooring puts a midnight stamp into the day that ends at it.
    days = (index.tz_convert("UTC") - pd.Timedelta(1, "ns")).floor("D")
    values = pd.Series(np.asarray([float(v) for v in samples.to_numpy()], dtype=float), index=index)
    by_day = values.groupby(days).last().sort_index()
    last_day = by_day.index[-1]
    if end is not None:
        end_day = pd.Timestamp(end)
        end_day = (end_day.tz_localize("UTC") if end_day.tzinfo is None else end_day.tz_convert("UTC")).floor("D")
        last_day = max(last_day, end_day)
    full = pd.date_range(by_day.index[0], last_day, freq="D")
    return by_day.reindex(full).ffill()


def daily_returns(equity: pd.Series) -> pd.Series:
    """Simple daily returns of a daily equity curve (from :func:`daily_equity`); one fewer value than days.

    :raises ValueError: equity is zero or negative somewhere (a return from it would be meaningless).
    """
    values = equity.astype(float)
    if (values <= 0).any():
        raise ValueError("equity must be positive on every day to compute returns")
    return values.pct_change().iloc[1:]


def sharpe_ratio(
    returns: pd.Series | Iterable[float], *, risk_free: float = 0.0, periods: int = PERIODS_PER_YEAR
) -> float | None:
    """Annualized Sharpe ratio: ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods)``.

    :param returns: daily simple returns, zero-return days included.
    :param risk_free: the risk-free return per period (per day), 0 by default.
    :param periods: periods per year, 365 for crypto.
    :return: ``None`` with fewer than two returns or when every excess return is the same (zero deviation).
    """
    excess = _as_float_array(returns) - risk_free
    if len(excess) < 2 or excess.max() == excess.min():
        return None
    std = float(np.std(excess, ddof=1))
    return _finite_or_none(float(np.mean(excess)) / std * math.sqrt(periods))


def downside_deviation(
    returns: pd.Series | Iterable[float], *, required_return: float = 0.0, periods: int = PERIODS_PER_YEAR
) -> float | None:
    """Annualized downside deviation: ``sqrt(mean(min(r - required, 0) ** 2)) * sqrt(periods)``.

    The mean runs over *all* periods, not just the losing ones (Sortino's target semideviation, as empyrical).

    :return: ``None`` when there are no returns.
    """
    adjusted = _as_float_array(returns) - required_return
    if len(adjusted) == 0:
        return None
    below = np.minimum(adjusted, 0.0)
    return float(np.sqrt(np.mean(below**2)) * math.sqrt(periods))


def sortino_ratio(
    returns: pd.Series | Iterable[float], *, required_return: float = 0.0, periods: int = PERIODS_PER_YEAR
) -> float | None:
    """Annualized Sortino ratio: ``mean(r - required) * periods / downside_deviation``.

    :param returns: daily simple returns, zero-return days included.
    :param required_return: the target return per period, 0 by default.
    :param periods: periods per year, 365 for crypto.
    :return: ``None`` with fewer than two returns or when no return falls below the target (no downside).
    """
    adjusted = _as_float_array(returns) - required_return
    if len(adjusted) < 2:
        return None
    downside = downside_deviation(adjusted, periods=periods)
    if not downside:
        return None
    return _finite_or_none(float(np.mean(adjusted)) * periods / downside)


def drawdowns(returns: pd.Series | Iterable[float]) -> np.ndarray:
    """The drawdown after each return, as a non-positive fraction of the running peak of equity.

    Equity starts at 1 before the first return, so a loss on the first day is already a drawdown.
    """
    array = _as_float_array(returns)
    equity = np.concatenate(([1.0], np.cumprod(1.0 + array)))
    peaks = np.maximum.accumulate(equity)
    return (equity / peaks - 1.0)[1:]


def max_drawdown(returns: pd.Series | Iterable[float]) -> float | None:
    """The deepest drawdown, a non-positive fraction (``-0.25``: 25% below the peak); ``None`` without returns."""
    series = drawdowns(returns)
    if len(series) == 0:
        return None
    return float(min(0.0, series.min()))


def annual_return(returns: pd.Series | Iterable[float], *, periods: int = PERIODS_PER_YEAR) -> float | None:
    """Compound annual growth rate: ``prod(1 + r) ** (periods / n) - 1``; ``None`` without returns."""
    array = _as_float_array(returns)
    if len(array) == 0:
        return None
    growth = float(np.prod(1.0 + array))
    if growth <= 0:
        return -1.0
    return _finite_or_none(growth ** (periods / len(array)) - 1.0)


def calmar_ratio(returns: pd.Series | Iterable[float], *, periods: int = PERIODS_PER_YEAR) -> float | None:
    """Calmar ratio: annual return / ``|max drawdown|``; ``None`` when equity never fell below a peak."""
    array = _as_float_array(returns)
    deepest = max_drawdown(array)
    if deepest is None or deepest >= 0:
        return None
    growth = annual_return(array, periods=periods)
    if growth is None:
        return None
    return _finite_or_none(growth / abs(deepest))


@dataclass(frozen=True)
class RiskFigures:
    """The equity-curve figures of one window of daily returns."""

    days: int
    sharpe_ratio: float | None
    sortino_ratio: float | None
    max_drawdown: float | None
    calmar_ratio: float | None
    annual_return: float | None


def risk_figures(returns: pd.Series | Iterable[float], *, periods: int = PERIODS_PER_YEAR) -> RiskFigures:
    """Sharpe, Sortino, max drawdown, Calmar and annual return of one window of daily returns."""
    array = _as_float_array(returns)
    return RiskFigures(
        days=len(array),
        sharpe_ratio=sharpe_ratio(array, periods=periods),
        sortino_ratio=sortino_ratio(array, periods=periods),
        max_drawdown=max_drawdown(array),
        calmar_ratio=calmar_ratio(array, periods=periods),
        annual_return=annual_return(array, periods=periods),
    )
