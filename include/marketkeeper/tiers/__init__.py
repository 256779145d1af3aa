"""Derived candle tiers: resampling a stored base series into coarser timeframes."""

from marketkeeper.tiers.buckets import TierBuckets
from marketkeeper.tiers.resample import (
    RESAMPLED_COLUMNS,
    bucket_ranges,
    check_derivable,
    resample_candles,
    resample_ranges,
    resample_tier,
)

__all__ = [
    "RESAMPLED_COLUMNS",
    "TierBuckets",
    "bucket_ranges",
    "check_derivable",
    "resample_candles",
    "resample_ranges",
    "resample_tier",
]
