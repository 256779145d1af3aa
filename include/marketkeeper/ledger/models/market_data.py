"""The platform's market-data tables: markets, the SQL candle store, gaps, quality runs and quarantine."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketkeeper.ledger.base import Base, BigIntKey
from marketkeeper.ledger.models.enums import GapStatus
from marketkeeper.ledger.types import enum_type, utcnow


class Market(Base):
    """A series marketkeeper keeps complete: an exchange symbol at its base timeframe, from ``first_date``."""

    __tablename__ = "markets"
    __table_args__ = (sa.UniqueConstraint("exchange", "symbol", "base_timeframe"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    exchange: Mapped[str] = mapped_column(sa.String(32))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    base_timeframe: Mapped[str] = mapped_column(sa.String(8))
    active: Mapped[bool] = mapped_column(default=True)
    #: First UTC day to keep; ``None`` means from the earliest candle the source has.
    first_date: Mapped[date | None]
    #: Where candles come from (a ccxt exchange by default, or e.g. a CSV import).
    source: Mapped[str] = mapped_column(sa.String(500), default="ccxt")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    gaps: Mapped[list[CandleGap]] = relationship(
        back_populates="market", cascade="all, delete-orphan", passive_deletes=True
    )


class Candle(Base):
    """The SQL candle store. The primary key is the series and open time, which makes re-ingestion an upsert
    (``ON CONFLICT DO UPDATE``) and serves range reads of one series from the primary key index alone.

    Prices and volumes are doubles, not ``Numeric``: candles arrive as IEEE floats, and a double column gives
    back exactly the float written, as the InfluxDB store does (migration 0003).
    """

    __tablename__ = "candles"

    exchange: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    symbol: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    open_time: Mapped[datetime] = mapped_column(primary_key=True)
    open: Mapped[float] = mapped_column(sa.Double())
    high: Mapped[float] = mapped_column(sa.Double())
    low: Mapped[float] = mapped_column(sa.Double())
    close: Mapped[float] = mapped_column(sa.Double())
    volume: Mapped[float] = mapped_column(sa.Double())
    quote_volume: Mapped[float | None] = mapped_column(sa.Double())
    trade_count: Mapped[int | None]
    #: Of a derived tier's candle (migration 0004): base candles present in the bucket, and those it spans.
    source_count: Mapped[int | None]
    expected_count: Mapped[int | None]
    ingested_at: Mapped[datetime] = mapped_column(default=utcnow)


class CandleGap(Base):
    """A run of missing candles ``[start, end)`` in a market's series and the story of filling it."""

    __tablename__ = "candle_gaps"
    __table_args__ = (
        sa.UniqueConstraint("market_id", "timeframe", "start", "end"),
        sa.Index("ix_candle_gaps_status", "status"),
        sa.CheckConstraint('"end" > start', name="end_after_start"),
        sa.CheckConstraint("missing_count >= 0 AND attempts >= 0", name="counts_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    market_id: Mapped[int] = mapped_column(BigIntKey, sa.ForeignKey("markets.id", ondelete="CASCADE"))
    timeframe: Mapped[str] = mapped_column(sa.String(8))
    start: Mapped[datetime]
    #: Exclusive: the open time of the first candle after the gap.
    end: Mapped[datetime]
    missing_count: Mapped[int]
    status: Mapped[GapStatus] = mapped_column(enum_type(GapStatus, "gap_status"), default=GapStatus.OPEN)
    attempts: Mapped[int] = mapped_column(default=0)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text())

    market: Mapped[Market] = relationship(back_populates="gaps")


class DataQualityRun(Base):
    """One validation of a range of candles; Airflow ids say which task ran it when it ran under Airflow."""

    __tablename__ = "data_quality_runs"
    __table_args__ = (
        sa.Index("ix_data_quality_runs_series_run_at", "exchange", "symbol", "timeframe", "run_at"),
        sa.Index("ix_data_quality_runs_run_at", "run_at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    suite: Mapped[str] = mapped_column(sa.String(100))
    # Nullable: a suite may check a whole store rather than one series or range.
    exchange: Mapped[str | None] = mapped_column(sa.String(32))
    symbol: Mapped[str | None] = mapped_column(sa.String(32))
    timeframe: Mapped[str | None] = mapped_column(sa.String(8))
    range_start: Mapped[datetime | None]
    range_end: Mapped[datetime | None]
    rows_checked: Mapped[int] = mapped_column(default=0)
    rows_failed: Mapped[int] = mapped_column(default=0)
    success: Mapped[bool]
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 250 is Airflow's own id length limit.
    dag_id: Mapped[str | None] = mapped_column(sa.String(250))
    run_id: Mapped[str | None] = mapped_column(sa.String(250))
    task_id: Mapped[str | None] = mapped_column(sa.String(250))

    quarantined: Mapped[list[QuarantinedCandle]] = relationship(back_populates="data_quality_run", passive_deletes=True)


class QuarantinedCandle(Base):
    """A candle that failed validation, kept verbatim (``raw_row``) with the expectation it broke."""

    __tablename__ = "quarantined_candles"
    __table_args__ = (sa.Index("ix_quarantined_candles_series", "exchange", "symbol", "timeframe", "open_time"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    exchange: Mapped[str] = mapped_column(sa.String(32))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    timeframe: Mapped[str] = mapped_column(sa.String(8))
    #: ``None`` for a source row whose open time could not be read at all.
    open_time: Mapped[datetime | None]
    raw_row: Mapped[dict[str, Any]]
    failed_expectation: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.Text())
    source: Mapped[str | None] = mapped_column(sa.String(500))
    data_quality_run_id: Mapped[int | None] = mapped_column(
        BigIntKey, sa.ForeignKey("data_quality_runs.id", ondelete="SET NULL"), index=True
    )
    quarantined_at: Mapped[datetime] = mapped_column(default=utcnow)

    data_quality_run: Mapped[DataQualityRun | None] = relationship(back_populates="quarantined")


class TradingSignal(Base):
    """A trading signal a strategy or bot published about a market, kept here when InfluxDB is not configured
    (``marketkeeper.marketdata.signals``). One row per market, source and time: storing it again replaces it."""

    __tablename__ = "trading_signals"
    __table_args__ = (
        sa.UniqueConstraint("exchange", "symbol", "source", "time"),
        sa.Index("ix_trading_signals_market_time", "exchange", "symbol", "time"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    exchange: Mapped[str] = mapped_column(sa.String(32))
    symbol: Mapped[str] = mapped_column(sa.String(32))
    #: The strategy or bot that published it.
    source: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[float] = mapped_column(sa.Double())
    #: 0 (none) .. 1 (certain).
    confidence: Mapped[float] = mapped_column(sa.Double())
    time: Mapped[datetime]
    stored_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
