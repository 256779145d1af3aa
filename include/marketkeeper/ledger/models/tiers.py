"""The bookkeeping of derived tiers and retention: base writes not yet downsampled, and retention horizons."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from marketkeeper.ledger.base import Base, BigIntKey
from marketkeeper.ledger.types import utcnow


class PendingDownsample(Base):
    """A write to a base series whose derived tiers were not yet recomputed: ``[start, end)`` of open times.

    The ingestion pipeline adds a row *before* each window's store write (a failed write leaves a harmless
    extra row); the downsample service removes the rows its recomputation covered, taken under the series
    lock. While a row overlaps a range, retention keeps that range's base candles, and the daily
    reconciliation pass recomputes it.
    """

    __tablename__ = "pending_downsamples"
    __table_args__ = (
        sa.Index("ix_pending_downsamples_series", "exchange", "symbol", "timeframe", "start"),
        sa.CheckConstraint('"end" > start', name="end_after_start"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    exchange: Mapped[str] = mapped_column(sa.String(32))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    timeframe: Mapped[str] = mapped_column(sa.String(8))
    #: The one derived timeframe still to recompute over the range; ``None``: every tier of the market.
    tier: Mapped[str | None] = mapped_column(sa.String(8))
    start: Mapped[datetime]
    #: Exclusive: just after the last open time written.
    end: Mapped[datetime]
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class RetentionHorizon(Base):
    """How far retention has deleted a series: no candle before ``horizon`` is kept, on purpose.

    Gap detection starts at the horizon, so a deleted range is never a gap and never backfilled again.
    """

    __tablename__ = "retention_horizons"

    exchange: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    symbol: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    horizon: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
