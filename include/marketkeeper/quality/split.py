"""A batch split into the rows to store, the rows to quarantine (with their values as received and why) and
the identical duplicates to skip, so that ``len(passed) + len(failed) + len(skipped)`` is every row received.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from marketkeeper.candles import DTYPES, OPEN_TIME, TRADE_COUNT, CandleFrameError, normalize_frame
from marketkeeper.quality.suite import PARSEABLE_ROW, Check, ExplainContext

__all__ = [
    "FAILED_DTYPES",
    "FAILED_EXPECTATION",
    "FILE",
    "LINE",
    "RAW",
    "REASON",
    "Batch",
    "prepare",
    "rejects_as_failed",
    "split",
]

#: Columns of a failed-rows frame besides the candle columns.
FAILED_EXPECTATION: Final = "failed_expectation"
REASON: Final = "reason"
#: A rejected source row's verbatim text, file and line (missing for rows of the batch itself).
RAW: Final = "raw"
FILE: Final = "file"
LINE: Final = "line"
#: Candle dtypes of failed rows: trade counts are objects, so 1.5 or ``inf`` are kept as received.
FAILED_DTYPES: Final[dict[str, object]] = {**DTYPES, TRADE_COUNT: np.dtype(object)}

_SEPARATOR: Final = "; "
_INT64_BOUNDS: Final = (-(2.0**63), 2.0**63)
_DUPLICATE_KEY: Final = "_mk_trade_count_received"


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch ready for the suite: normalized, identical duplicates set aside."""

    #: The rows to judge in the canonical candle shape; a trade count ``Int64`` cannot hold (1.5, inf) is NA.
    candles: pd.DataFrame
    #: The trade counts as received, floats with NaN where missing, row for row (``None``: no such column).
    trade_counts: npt.NDArray[np.float64] | None
    #: Copies identical in every column (as received) of a row in :attr:`candles`.
    skipped: pd.DataFrame


def prepare(frame: pd.DataFrame) -> Batch:
    """``frame`` normalized, with trade counts an ``Int64`` cannot hold kept aside instead of failing it whole.

    :raises CandleFrameError: a candle column is missing, holds text, or open times are naive.
    """
    counts: npt.NDArray[np.float64] | None = None
    candles: pd.DataFrame | None = None
    if TRADE_COUNT in frame.columns:
        column = frame[TRADE_COUNT].reset_index(drop=True)
        received = _as_floats(column)
        holdable = np.isnan(received) | (
            (np.floor(received) == received) & (received >= _INT64_BOUNDS[0]) & (received < _INT64_BOUNDS[1])
        )
        if not holdable.all():
            # normalize_frame raises on a count Int64 cannot hold, failing the whole batch: it gets NA there
            # instead, and once more the row positions as counts, to carry the received values through its
            # sort (by open time only, so both calls order the rows alike).
            candles = normalize_frame(frame.assign(**{TRADE_COUNT: column.mask(pd.Series(~holdable)).to_numpy()}))
            positions = normalize_frame(frame.assign(**{TRADE_COUNT: np.arange(len(frame), dtype=np.int64)}))
            counts = received[positions[TRADE_COUNT].to_numpy(dtype=np.int64)]
    if candles is None:
        candles = normalize_frame(frame)
        if TRADE_COUNT in candles.columns:
            counts = candles[TRADE_COUNT].to_numpy(dtype=np.float64, na_value=np.nan)
    # Identical rows share their open time, so only rows whose open time repeats are compared in full: the
    # whole-row comparison costs ten times the open-time one and a healthy batch has no repeats at all.
    identical = np.zeros(len(candles), dtype=bool)
    repeated = candles[OPEN_TIME].duplicated(keep=False).to_numpy()
    if repeated.any():
        # Rows differing only in a count NA stands in for (1.5 vs 2.5) are not identical.
        keyed = candles if counts is None else candles.assign(**{_DUPLICATE_KEY: counts})
        identical[repeated] = keyed[repeated].duplicated(keep="first").to_numpy()
    if not identical.any():
        return Batch(candles=candles, trade_counts=counts, skipped=candles.iloc[:0])
    return Batch(
        candles=candles[~identical].reset_index(drop=True),
        trade_counts=None if counts is None else counts[~identical],
        skipped=candles[identical].reset_index(drop=True),
    )


def split(
    batch: Batch, findings: Mapping[int, Sequence[Check]], ctx: ExplainContext
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``batch`` no check failed (ready to store), and the failed ones with their expectations,
    reasons and values as received.

    :param findings: the checks each failing row broke, by row position in ``batch.candles``.
    """
    candles = batch.candles
    bad = np.zeros(len(candles), dtype=bool)
    bad[list(findings)] = True
    if not findings:
        # The usual batch: every row is stored, and copying them all would only cost time.
        none = candles.iloc[:0].copy()
        if TRADE_COUNT in none.columns:
            none[TRADE_COUNT] = none[TRADE_COUNT].astype(object)
        return candles, _failed_columns(none, [], [])
    passed = candles[~bad].reset_index(drop=True)
    failed = candles[bad].reset_index(drop=True)
    if TRADE_COUNT in failed.columns:
        received = failed[TRADE_COUNT].astype(object)
        if batch.trade_counts is not None:
            counts = batch.trade_counts[bad]
            lost = failed[TRADE_COUNT].isna().to_numpy() & ~np.isnan(counts)
            received[lost] = counts[lost]
        failed[TRADE_COUNT] = received
    names: list[str] = []
    reasons: list[str] = []
    records = failed.to_dict("records")
    for position, record in zip(np.flatnonzero(bad), records, strict=True):
        checks = findings[int(position)]
        names.append(_SEPARATOR.join(check.name for check in checks))
        reasons.append(_SEPARATOR.join(check.explain(record, ctx) for check in checks))
    return passed, _failed_columns(failed, names, reasons)


def _failed_columns(failed: pd.DataFrame, names: list[str], reasons: list[str]) -> pd.DataFrame:
    """``failed`` with the columns saying which expectations each row broke and why."""
    failed[FAILED_EXPECTATION] = pd.Series(names, dtype=object)
    failed[REASON] = pd.Series(reasons, dtype=object)
    failed[RAW] = pd.Series([None] * len(failed), dtype=object)
    failed[FILE] = pd.Series([None] * len(failed), dtype=object)
    failed[LINE] = pd.Series([pd.NA] * len(failed), dtype="Int64")
    return failed


def rejects_as_failed(rejects: pd.DataFrame | None, columns: pd.Index) -> pd.DataFrame:
    """Rejected source rows in the shape of the failed rows: no candle values, the verbatim text.

    :param rejects: rows a source could not parse (:func:`~marketkeeper.sources.base.rejects_frame`), or ``None``.
    :param columns: the candle columns of the batch.
    :raises ValueError: ``rejects`` lacks ``reason`` or ``raw``.
    """
    n = 0 if rejects is None else len(rejects)
    out = pd.DataFrame({name: pd.Series([None] * n, dtype=FAILED_DTYPES[name]) for name in columns})
    if rejects is None or not n:
        return out.assign(
            **{
                FAILED_EXPECTATION: pd.Series([], dtype=object),
                REASON: pd.Series([], dtype=object),
                RAW: pd.Series([], dtype=object),
                FILE: pd.Series([], dtype=object),
                LINE: pd.Series([], dtype="Int64"),
            }
        )
    missing = [name for name in ("reason", "raw") if name not in rejects.columns]
    if missing:
        raise ValueError(f"rejects frame lacks column(s) {', '.join(missing)}; build it with rejects_frame()")
    rejects = rejects.reset_index(drop=True)
    if OPEN_TIME in rejects.columns:
        out[OPEN_TIME] = pd.to_datetime(rejects[OPEN_TIME], utc=True).astype(DTYPES[OPEN_TIME])
    out[FAILED_EXPECTATION] = pd.Series([PARSEABLE_ROW] * n, dtype=object)
    out[REASON] = rejects["reason"].astype(object)
    out[RAW] = rejects["raw"].astype(object)
    out[FILE] = rejects[FILE].astype(object) if FILE in rejects.columns else None
    out[LINE] = rejects[LINE].astype("Int64") if LINE in rejects.columns else pd.NA
    return out


def _as_floats(column: pd.Series) -> npt.NDArray[np.float64]:
    try:
        numbers = pd.to_numeric(column, errors="raise")
        floats: npt.NDArray[np.float64] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CandleFrameError(f"column {TRADE_COUNT} cannot be read as numbers: {exc}") from exc
    return floats
