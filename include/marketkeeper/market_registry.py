"""Keeps the ``markets`` table in step with the declared markets (markets.yaml or an Airflow Variable).

The declaration is the source of truth for what to ingest; the table is what gap detection, backfills and
reports join against. A market dropped from the declaration is deactivated, never deleted: its history stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from marketkeeper.ledger import Market
from marketkeeper.markets import MarketSpec


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    deactivated: int


def sync_markets(session: Session, specs: Sequence[MarketSpec]) -> SyncReport:
    """Insert new markets, update changed ones, deactivate markets no longer declared."""
    existing = {(m.exchange, m.symbol, m.base_timeframe): m for m in session.scalars(sa.select(Market))}
    added = updated = deactivated = 0
    declared = set()
    for spec in specs:
        natural = (spec.exchange, spec.symbol, str(spec.base_timeframe))
        declared.add(natural)
        market = existing.get(natural)
        if market is None:
            session.add(
                Market(
                    exchange=spec.exchange,
                    symbol=spec.symbol,
                    base_timeframe=str(spec.base_timeframe),
                    first_date=spec.first_date,
                    source=spec.source,
                    active=spec.active,
                )
            )
            added += 1
            continue
        wanted = {"first_date": spec.first_date, "source": spec.source, "active": spec.active}
        if any(getattr(market, name) != value for name, value in wanted.items()):
            for name, value in wanted.items():
                setattr(market, name, value)
            updated += 1
    for natural, market in existing.items():
        if natural not in declared and market.active:
            market.active = False
            deactivated += 1
    session.flush()
    return SyncReport(added=added, updated=updated, deactivated=deactivated)
