"""How every writing use case starts: the stores opened from a config, the series lock taken under the lock
policy. One place, so a change to either reaches the CLI and the DAGs alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from marketkeeper.candles import SeriesKey
from marketkeeper.locks import SeriesLock, series_lock
from marketkeeper.services.policy import LockPolicy, lock_policy
from marketkeeper.store_set import StoreConfig, StoreSet


@contextlib.contextmanager
def series_writer(
    config: StoreConfig, key: SeriesKey, policy: LockPolicy | None = None, *, stores: StoreSet | None = None
) -> Iterator[tuple[StoreSet, SeriesLock]]:
    """Open the stores ``config`` names and hold ``key``'s lock (in the ledger) while the block runs.

    :param stores: stores a batch already opened (:mod:`marketkeeper.services.batch`): used as they are and
        left open; only the lock is taken and released here.
    :raises SeriesLockedError: another writer kept the series past the policy's wait.
    """
    rules = policy or lock_policy()
    with contextlib.ExitStack() as stack:
        opened = stores if stores is not None else stack.enter_context(StoreSet.open(config))
        lock = stack.enter_context(series_lock(key, ledger=opened.ledger, wait=rules.wait, ttl=rules.ttl))
        yield opened, lock
