"""The derived tiers' bookkeeping: pending downsamples (base writes whose tiers are not recomputed yet) and the
retention horizons of series. :mod:`marketkeeper.services.downsample` and :mod:`~marketkeeper.services.retention`
own their meaning; this module only reads and writes the rows, with the range arithmetic they need."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger.models import PendingDownsample, RetentionHorizon
from marketkeeper.repositories.base import Repository
from marketkeeper.timeframes import ensure_utc

__all__ = ["TierRepository"]

Range = tuple[datetime, datetime]


class TierRepository(Repository[PendingDownsample]):
    """Pending downsamples by series and tier, and retention horizons."""

    model = PendingDownsample
    default_order = ("exchange", "symbol", "timeframe", "start")

    @staticmethod
    def _of(key: SeriesKey) -> sa.ColumnElement[bool]:
        t = PendingDownsample
        return sa.and_(t.exchange == key.exchange, t.symbol == key.symbol, t.timeframe == str(key.timeframe))

    def mark_written(self, key: SeriesKey, start: datetime, end: datetime) -> None:
        """Record that ``[start, end)`` of the base series ``key`` is (about to be) written: every tier is stale."""
        if end > start:
            self.session.add(
                PendingDownsample(
                    exchange=key.exchange, symbol=key.symbol, timeframe=str(key.timeframe), start=start, end=end
                )
            )
            self._flush("mark_written")

    def last_id(self, key: SeriesKey) -> int:
        """The newest pending row of ``key`` (0 if none): a recomputation settles only rows up to it."""
        newest = sa.select(sa.func.coalesce(sa.func.max(PendingDownsample.id), 0)).where(self._of(key))
        return int(self.session.scalar(newest) or 0)

    def pending(self, key: SeriesKey | None = None, *, within: Range | None = None) -> builtins.list[PendingDownsample]:
        """The pending rows (of ``key``; overlapping ``within``), by series and start."""
        statement = sa.select(PendingDownsample)
        if key is not None:
            statement = statement.where(self._of(key))
        if within is not None:
            statement = statement.where(PendingDownsample.start < within[1], PendingDownsample.end > within[0])
        return self._all(statement)

    def settle(
        self,
        key: SeriesKey,
        done: Range,
        *,
        tiers: Iterable[str],
        unsettled: Mapping[str, Range | None],
        upto_id: int,
    ) -> int:
        """After a recomputation of ``tiers`` over ``done``: take ``done`` out of the rows up to ``upto_id`` that
        named those tiers (or every tier), and keep pending what is left: the other tiers of an every-tier
        row, and per tier the part of ``done`` whose buckets had not closed yet (``unsettled[tier]``).

        :param tiers: the tiers recomputed; ``unsettled`` holds every tier of the market as a key.
        :returns: how many rows were settled (changed or removed).
        """
        recomputed = set(tiers)
        rows = [
            r for r in self.pending(key, within=done) if r.id <= upto_id and (r.tier is None or r.tier in recomputed)
        ]
        keep: list[tuple[str | None, Range]] = []
        for row in rows:
            start, end = ensure_utc(row.start), ensure_utc(row.end)
            overlap = (max(start, done[0]), min(end, done[1]))
            for outside in _minus((start, end), overlap):
                keep.append((row.tier, outside))
            for tier, left in unsettled.items():
                if row.tier is not None and row.tier != tier:
                    continue
                if tier not in recomputed:
                    keep.append((tier, overlap))
                elif left is not None:
                    piece = (max(overlap[0], left[0]), min(overlap[1], left[1]))
                    if piece[1] > piece[0]:
                        keep.append((tier, piece))
            self.session.delete(row)
        self._flush("settle")
        for kept_tier, (start, end) in _merged(keep):
            self._add(key, kept_tier, start, end)
        self._flush("settle")
        return len(rows)

    def _add(self, key: SeriesKey, tier: str | None, start: datetime, end: datetime) -> None:
        self.session.add(
            PendingDownsample(
                exchange=key.exchange, symbol=key.symbol, timeframe=str(key.timeframe), tier=tier, start=start, end=end
            )
        )

    def forget(self, key: SeriesKey) -> int:
        """Drop every pending row of ``key`` (a series whose market derives no tier)."""
        result = self.session.execute(sa.delete(PendingDownsample).where(self._of(key)))
        return int(getattr(result, "rowcount", 0) or 0)

    # --- retention horizons -----------------------------------------------------------------------------

    def horizon(self, key: SeriesKey) -> datetime | None:
        """The open time before which retention deleted ``key``'s candles; ``None`` if it never did."""
        row = self.session.get(RetentionHorizon, (key.exchange, key.symbol, str(key.timeframe)))
        return None if row is None else ensure_utc(row.horizon)

    def horizons(self, exchange: str, symbol: str) -> dict[str, datetime]:
        """The retention horizons of every timeframe of one market, in one query (timeframe -> horizon)."""
        rows = self.session.execute(
            sa.select(RetentionHorizon.timeframe, RetentionHorizon.horizon).where(
                RetentionHorizon.exchange == exchange, RetentionHorizon.symbol == symbol
            )
        ).all()
        return {timeframe: ensure_utc(horizon) for timeframe, horizon in rows}

    def advance_horizon(self, key: SeriesKey, horizon: datetime) -> None:
        """Move ``key``'s horizon forward to ``horizon`` (never back)."""
        row = self.session.get(RetentionHorizon, (key.exchange, key.symbol, str(key.timeframe)))
        if row is None:
            self.session.add(
                RetentionHorizon(
                    exchange=key.exchange, symbol=key.symbol, timeframe=str(key.timeframe), horizon=horizon
                )
            )
        elif ensure_utc(row.horizon) < horizon:
            row.horizon = horizon
        self._flush("advance_horizon")


def _minus(whole: Range, cut: Range) -> list[Range]:
    pieces = [(whole[0], min(whole[1], cut[0])), (max(whole[0], cut[1]), whole[1])]
    return [(a, b) for a, b in pieces if b > a]


def _merged(ranges: Iterable[tuple[str | None, Range]]) -> list[tuple[str | None, Range]]:
    """Ranges of the same tier that touch or overlap, joined (so a tier's pending rows stay few)."""
    out: list[tuple[str | None, Range]] = []
    for tier, (start, end) in sorted(ranges, key=lambda item: (item[0] or "", item[1])):
        if out and out[-1][0] == tier and start <= out[-1][1][1]:
            out[-1] = (tier, (out[-1][1][0], max(out[-1][1][1], end)))
        else:
            out.append((tier, (start, end)))
    return out
