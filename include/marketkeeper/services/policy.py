"""Policies every writer of a deployment shares, whichever adapter (CLI or DAG) calls the service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class LockPolicy:
    """How a writer takes a series lock.

    :param wait: seconds to wait for another writer of the series to let go before failing, naming it.
    :param ttl: seconds a lock outlives its holder's last renewal (backends whose locks die with the holder
        use it to bound how long a lost lock goes unnoticed).
    """

    wait: float = 300.0
    ttl: float = 60.0


#: The one lock policy: ``marketkeeper ingest|backfill`` and the DAG tasks all wait this long.
LOCK_POLICY: LockPolicy = LockPolicy()

#: Above this share of failing rows in a window the ingestion fails (after recording the evidence).
DEFAULT_MAX_FAILED_FRACTION: Final = 0.01

#: Where gap detection starts for a market that declares no ``first_date`` and has nothing stored yet.
DEFAULT_HISTORY_DAYS: Final = 30


def lock_policy() -> LockPolicy:
    """The lock policy in force (read at call time, so one change reaches every adapter)."""
    return LOCK_POLICY
