"""Gaps of candle series in one package: detection (:mod:`.detect`), the persistent registry of what is
missing (:mod:`.registry`) and the backfill that fills it (:mod:`.backfill`).

The use cases (detect a series' gaps, backfill a series) are :mod:`marketkeeper.services.gaps`; the CLI and
the ``ohlcv_gaps`` DAG call those.
"""

from marketkeeper.gaps.detect import Gap, GapArrays, detection_window, find_gap_arrays, find_gaps

__all__ = ["Gap", "GapArrays", "detection_window", "find_gap_arrays", "find_gaps"]
