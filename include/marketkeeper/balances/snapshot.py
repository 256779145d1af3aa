"""What a balance snapshot holds: one :class:`Balance` per currency, the :class:`SnapshotReport` of a snapshot
taken, and its InfluxDB form (measurement ``balances``, one point per currency, overwriting itself on a re-run).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from marketkeeper.balances.accounts import AccountKind

#: The InfluxDB measurement the snapshots also go to.
BALANCES_MEASUREMENT: Final = "balances"
_ZERO = Decimal(0)


@dataclass(frozen=True)
class Balance:
    """One currency's balance: ``total = available + locked`` as the exchange reports them."""

    currency: str
    total: Decimal
    available: Decimal
    locked: Decimal = _ZERO

    def row(self) -> dict[str, Any]:
        """The ``balance_snapshots`` columns of this currency (the account and instant are the caller's)."""
        return {
            "currency": self.currency,
            "total_balance": self.total,
            "available_balance": self.available,
            "locked_balance": self.locked,
        }


@dataclass(frozen=True)
class SnapshotReport:
    """What one snapshot recorded."""

    account: str
    kind: AccountKind
    user_id: uuid.UUID
    exchange: str
    timestamp: datetime
    balances: tuple[Balance, ...]
    influxdb_points: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (XCom): decimals as strings, times as ISO 8601."""
        return {
            "account": self.account,
            "kind": self.kind.value,
            "user_id": str(self.user_id),
            "exchange": self.exchange,
            "timestamp": self.timestamp.isoformat(),
            "balances": {b.currency: str(b.total) for b in self.balances},
            "influxdb_points": self.influxdb_points,
        }


def with_zeroed(reported: Iterable[Balance], held: Iterable[str]) -> list[Balance]:
    """An exchange's answer as a snapshot, sorted by currency: every currency with a non-zero figure, plus a
    zero row for each currency the previous snapshot ``held`` (so a balance that went to zero reads as zero,
    not as its last value)."""
    held = set(held)
    answered = list(reported)
    kept = [b for b in answered if b.total or b.available or b.locked or b.currency in held]
    gone = held - {b.currency for b in answered}
    return sorted(kept + [Balance(currency, _ZERO, _ZERO, _ZERO) for currency in gone], key=lambda b: b.currency)


def balance_lines(report: SnapshotReport) -> list[str]:
    """The snapshot as line protocol of measurement ``balances`` (tags: account, kind, user_id, exchange,
    currency; float fields: total, available, locked), nanosecond timestamps."""
    from marketkeeper.influxdb import Point

    return [
        Point(
            BALANCES_MEASUREMENT,
            fields={"total": b.total, "available": b.available, "locked": b.locked},
            tags={
                "account": report.account,
                "kind": report.kind.value,
                "user_id": str(report.user_id),
                "exchange": report.exchange,
                "currency": b.currency,
            },
            time=report.timestamp,
        ).to_line()
        for b in report.balances
    ]
