"""Derived candle tiers: resampling a stored base series into coarser timeframes."""

from marketkeeper.tiers.resample import (
    RESAMPLED_COLUMNS,
    check_derivable,
    resample_candles,
    resample_ranges,
    resample_tier,
)

__all__ = ["RESAMPLED_COLUMNS", "check_derivable", "resample_candles", "resample_ranges", "resample_tier"]
