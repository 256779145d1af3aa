"""The use cases, one function each, shared by the command line and the DAGs.

A service function takes a :class:`~marketkeeper.store_set.StoreConfig` (where the stores are) and a request,
opens its own stores (:meth:`~marketkeeper.store_set.StoreSet.open`), takes its own series lock under the one
:data:`~marketkeeper.services.policy.LOCK_POLICY`, runs its own ledger units of work, and returns a typed
report. ``marketkeeper ...`` commands and DAG tasks are thin adapters: they parse their input (options,
Params, the data interval), call the function, and print or return its report.

- :mod:`.markets`: the declared markets (file, ``MARKETKEEPER_MARKETS`` or the Airflow Variable), synced
  into the ledger, and the market of a series.
- :mod:`.ingest`: ingest a series over a range or over a run's data interval.
- :mod:`.gaps`: detect a series' gaps; backfill a series (its gaps, or the whole range).
- :mod:`.health`: check every configured store.
- :mod:`.balances`, :mod:`.rollups`: balance snapshots and performance rollups.
- :mod:`.remote`: the gap backfill run by a remote Airflow.
"""
