"""Use cases of backups and restore drills, one function each; ``marketkeeper backup ...`` and the ``backups``
and ``restore_drill`` DAGs call these and nothing else.

Every attempt is a ``backup_runs`` row, committed as ``running`` before the tool starts, so a killed process
leaves a row that never reads as succeeded; the row becomes ``succeeded`` only after the file is complete,
checksummed and under its final name, else ``failed`` with the cause (a process that died: by the next run or
prune, :mod:`marketkeeper.backups.abandoned`). A drill's outcome (``verified`` or
``drill_failed``, RTO, RPO, first difference) is written on the row of the backup it restored.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from marketkeeper.backups.abandoned import settle_abandoned, settle_restored_copy, this_process
from marketkeeper.backups.config import BackupSettings
from marketkeeper.backups.destination import Destination
from marketkeeper.backups.drill import run_drill
from marketkeeper.backups.errors import BackupError, ChecksumMismatchError, DrillFailedError, NoBackupError
from marketkeeper.backups.outcomes import BackupOutcome, DrillOutcome, PrunePlan, StoreSkipped
from marketkeeper.backups.rotation import Candidate, plan_rotation
from marketkeeper.backups.stores import open_tool, tool_class
from marketkeeper.errors import ConfigurationError, first_line
from marketkeeper.ledger.models import BackupRun, BackupStatus
from marketkeeper.ledger.types import utcnow
from marketkeeper.repositories import unit_of_work
from marketkeeper.repositories.backups import COMPLETE_STATUSES
from marketkeeper.settings import redact
from marketkeeper.store_set import StoreConfig, StoreSet

__all__ = [
    "STORES",
    "BackupOutcome",
    "DrillOutcome",
    "PrunePlan",
    "StoreSkipped",
    "configured_stores",
    "drill_store",
    "drill_stores",
    "list_backups",
    "prune_backups",
    "restore_backup",
    "run_backup",
    "run_backups",
    "select_stores",
    "unconfigured",
    "verify_backup",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Every store that can be backed up, in the order they run.
STORES = ("ledger", "influxdb", "redis")


# --- wiring -------------------------------------------------------------------------------------------------


def configured_stores(config: StoreConfig) -> list[str]:
    """The stores this deployment has: the ledger, and InfluxDB and Redis when configured."""
    return [
        s for s in STORES if s == "ledger" or (s == "influxdb" and config.influxdb) or (s == "redis" and config.redis)
    ]


def unconfigured(config: StoreConfig, store: str) -> StoreSkipped | None:
    """Why ``store`` is passed over here (it is not configured: not a failure), or ``None`` when it is."""
    if store in configured_stores(config):
        return None
    return StoreSkipped(store, "not configured", config.absent.get(store))


def _each_store(
    config: StoreConfig, stores: Sequence[str] | None, act: Callable[[str], T]
) -> list[T | StoreSkipped | BackupError]:
    """``act`` on each of ``stores`` (each must be configured), or on every store, those not configured
    skipped; a store's failure is its outcome, and so is a skip (not configured, nothing to drill).

    :raises ConfigurationError: a store in ``stores`` is unknown or not configured.
    """
    outcomes: list[T | StoreSkipped | BackupError] = []
    for store in select_stores(config, stores) if stores else STORES:
        if (skipped := unconfigured(config, store)) is not None:
            outcomes.append(skipped)
            continue
        try:
            outcomes.append(act(store))
        except NoBackupError as exc:
            outcomes.append(StoreSkipped.no_backup(exc))
        except BackupError as exc:
            outcomes.append(exc)
    return outcomes


def select_stores(config: StoreConfig, stores: Sequence[str] | None = None) -> list[str]:
    """``stores`` checked against this deployment (unknown or unconfigured: an error), or every configured one.

    :raises ConfigurationError: a store is unknown or not configured.
    """
    if not stores:
        return configured_stores(config)
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        raise ConfigurationError(f"unknown store(s) {', '.join(unknown)}: choose from {', '.join(STORES)}")
    missing = [s for s in stores if s not in configured_stores(config)]
    if missing:
        raise ConfigurationError(
            f"{', '.join(missing)} is not configured here ({config.origin}): "
            + "; ".join(config.absent.get(s, f"{s} not configured") for s in missing)
        )
    return list(dict.fromkeys(stores))


def _destination(settings: BackupSettings, destination: Destination | None) -> Destination:
    return destination or Destination(settings.url, conn_id=settings.marketkeeper_backup_conn_id)


# --- backups ------------------------------------------------------------------------------------------------


def run_backup(
    config: StoreConfig,
    store: str,
    *,
    settings: BackupSettings | None = None,
    destination: Destination | None = None,
) -> BackupOutcome:
    """Back ``store`` up once: a ``succeeded`` row with size, sha256 and figures, or a ``failed`` one.

    :raises BackupError: the backup failed (the row says why; no file is left under a final name).
    :raises ConfigurationError: ``store`` is unknown or not configured.
    """
    settings = settings or BackupSettings()
    (store,) = select_stores(config, [store])
    target = _destination(settings, destination)
    with StoreSet.open(config) as stores:
        with unit_of_work(stores.ledger) as repos:
            settle_abandoned(repos, target, timeout=settings.abandon_after, store=store)
            run = repos.backups.start(
                store=store, kind=tool_class(config, store).kind, location=target.url, process=this_process()
            )
        try:
            with open_tool(config, store, settings) as tool:
                tool_version, server_version = tool.versions()
                name = f"{store}-{run.started_at:%Y%m%dT%H%M%SZ}-{run.id}{tool.suffix}"
                with unit_of_work(stores.ledger) as repos:
                    # Its file's name: a settlement finds the partial file if this process dies mid-write.
                    run = repos.backups.record(
                        repos.session.merge(run),
                        tool_version=tool_version,
                        server_version=server_version,
                        details={"file": name},
                    )
                stored, figures = target.write(store, name, tool.dump)
        except BaseException as exc:  # a failed, interrupted or killed attempt never stays "running"
            error = redact(first_line(exc), _secrets(config))
            with unit_of_work(stores.ledger) as repos:
                repos.backups.fail(repos.session.merge(run), error)
            log.error("backup of %s failed: %s", store, error)
            if isinstance(exc, BackupError | ConfigurationError):
                raise
            if isinstance(exc, Exception):
                raise BackupError(f"backup of {store} failed: {error}") from exc
            raise
        with unit_of_work(stores.ledger) as repos:
            done = repos.backups.succeed(
                repos.session.merge(run),
                size_bytes=stored.size,
                sha256=stored.sha256,
                location=stored.location,
                figures=figures,
            )
            outcome = BackupOutcome.of(done)
    log.info("backed up %s to %s (%d bytes, sha256 %s)", store, outcome.location, outcome.size, outcome.sha256)
    return outcome


def _secrets(config: StoreConfig) -> list[str]:
    from sqlalchemy.engine import make_url

    password = make_url(config.ledger_url).password
    return [password] if isinstance(password, str) and password else []


def run_backups(
    config: StoreConfig,
    stores: Sequence[str] | None = None,
    *,
    settings: BackupSettings | None = None,
    destination: Destination | None = None,
) -> list[BackupOutcome | StoreSkipped | BackupError]:
    """Back up each of ``stores`` (default: every store, those not configured skipped without a row); each
    store's failure is its own outcome.

    :raises ConfigurationError: a store in ``stores`` is unknown or not configured.
    """
    return _each_store(config, stores, lambda s: run_backup(config, s, settings=settings, destination=destination))


def list_backups(config: StoreConfig, store: str | None = None, *, limit: int = 1000) -> list[BackupOutcome]:
    """The catalog, newest first."""
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        return [BackupOutcome.of(run) for run in repos.backups.of_store(store, limit=limit)]


def _complete(repos: Any, backup_id: int) -> BackupRun:
    run: BackupRun = repos.backups.get(backup_id)
    if run.status not in COMPLETE_STATUSES or not run.sha256:
        raise BackupError(f"backup {backup_id} ({run.store}) is {run.status}: it has no complete file")
    return run


def verify_backup(
    config: StoreConfig,
    backup_id: int,
    *,
    settings: BackupSettings | None = None,
    destination: Destination | None = None,
) -> BackupOutcome:
    """Re-hash a stored backup against its recorded sha256 (only the file: a drill proves it restores).

    :raises ChecksumMismatchError: the stored bytes changed (recorded in the row's details).
    :raises NotFoundError: there is no backup ``backup_id``.
    """
    target = _destination(settings or BackupSettings(), destination)
    with StoreSet.open(config) as stores:
        with unit_of_work(stores.ledger) as repos:
            run = _complete(repos, backup_id)
        digest, size = target.sha256(run.location)
        with unit_of_work(stores.ledger) as repos:
            run = repos.session.merge(run)
            if digest != run.sha256 or size != run.size_bytes:
                error = (
                    f"backup {backup_id} ({run.store}) at {run.location} is corrupt: sha256 {digest} "
                    f"({size} bytes) != {run.sha256} ({run.size_bytes} bytes) recorded"
                )
                repos.backups.record(
                    run, details={**run.details, "verify": {"at": utcnow().isoformat(), "error": error}}
                )
            else:
                error = None
                repos.backups.checksum_verified(run)
            outcome = BackupOutcome.of(run)
    if error is not None:
        raise ChecksumMismatchError(error)
    return outcome


# --- drills -------------------------------------------------------------------------------------------------


def drill_store(
    config: StoreConfig,
    store: str,
    *,
    settings: BackupSettings | None = None,
    destination: Destination | None = None,
) -> DrillOutcome:
    """Drill ``store``'s newest complete backup: checksum, restore into a scratch target, compare, drop it;
    the outcome, RTO and RPO recorded on that backup's row.

    :raises DrillFailedError: the checksum, the restore or the comparison failed (naming the first difference).
    :raises NoBackupError: the store has no complete backup to drill (nothing is recorded).
    """
    settings = settings or BackupSettings()
    (store,) = select_stores(config, [store])
    target = _destination(settings, destination)
    with StoreSet.open(config) as stores:
        with unit_of_work(stores.ledger) as repos:
            run = repos.backups.newest_complete(store)
            if run is None:
                raise NoBackupError(store)
        assert run.sha256 is not None and run.finished_at is not None
        with open_tool(config, store, settings) as tool:
            result = run_drill(
                tool,
                target,
                backup_id=run.id,
                location=run.location,
                sha256=run.sha256,
                finished_at=run.finished_at,
                recorded=run.figures,
            )
        with unit_of_work(stores.ledger) as repos:
            repos.backups.drilled(
                repos.session.merge(run),
                passed=result.passed,
                error=result.difference,
                rto_seconds=result.rto_seconds,
                rpo_seconds=result.rpo_seconds,
                details={"at": utcnow().isoformat(), "passed": result.passed, "difference": result.difference},
            )
    outcome = DrillOutcome(
        store=store,
        backup_id=run.id,
        passed=result.passed,
        error=result.difference,
        rto_seconds=result.rto_seconds,
        rpo_seconds=result.rpo_seconds,
    )
    if not result.passed:
        raise DrillFailedError(store, run.id, result.difference or "unknown")
    log.info(
        "drill of %s backup %d passed: RTO %.1f s, RPO %.0f s", store, run.id, result.rto_seconds, result.rpo_seconds
    )
    return outcome


def drill_stores(
    config: StoreConfig,
    stores: Sequence[str] | None = None,
    *,
    settings: BackupSettings | None = None,
    destination: Destination | None = None,
) -> list[DrillOutcome | StoreSkipped | BackupError]:
    """Drill each of ``stores`` (default: every store); a store not configured, or without a backup yet, is
    skipped; each store's failure is its own outcome.

    :raises ConfigurationError: a store in ``stores`` is unknown or not configured.
    """
    return _each_store(config, stores, lambda s: drill_store(config, s, settings=settings, destination=destination))


# --- restore and rotation -----------------------------------------------------------------------------------


def restore_backup(
    config: StoreConfig,
    backup_id: int,
    into: str,
    *,
    overwrite: bool = False,
    settings: BackupSettings | None = None,
    destination: Destination | None = None,
) -> str:
    """Restore backup ``backup_id`` for real into ``into`` (a new database by default); what was done.

    A restored ledger's own row of this backup (``running`` when dumped) is set to what the catalog says.

    :raises RestoreRefusedError: ``into`` exists and ``overwrite`` is false.
    :raises ChecksumMismatchError: the stored file is corrupt (nothing is restored).
    """
    settings = settings or BackupSettings()
    target = _destination(settings, destination)
    with StoreSet.open(config) as stores, unit_of_work(stores.ledger) as repos:
        run = _complete(repos, backup_id)
    assert run.sha256 is not None
    with (
        open_tool(config, run.store, settings) as tool,
        tempfile.TemporaryDirectory(prefix="marketkeeper-restore-") as tmp,
    ):
        local = target.fetch(run.location, Path(tmp, f"backup{tool.suffix}"), expected_sha256=run.sha256)
        said = tool.restore_into(local, into, overwrite=overwrite)
        restored_url = tool.restored_ledger_url(into)
    if restored_url is not None and settle_restored_copy(restored_url, run):
        said += f"; its row of backup {run.id} reads {run.status}, as in the catalog"
    return said


def prune_backups(
    config: StoreConfig,
    *,
    dry_run: bool = False,
    settings: BackupSettings | None = None,
    destination: Destination | None = None,
) -> PrunePlan:
    """Apply grandfather-father-son rotation to every store's complete backups: delete the files and catalog
    rows of those it does not keep (never a store's newest verified backup), after settling abandoned attempts
    (:mod:`marketkeeper.backups.abandoned`); ``dry_run`` changes nothing."""
    settings = settings or BackupSettings()
    target = _destination(settings, destination)
    with StoreSet.open(config) as stores:
        with unit_of_work(stores.ledger) as repos:
            settled = [] if dry_run else settle_abandoned(repos, target, timeout=settings.abandon_after)
            runs = {run.id: run for run in repos.backups.complete()}
        candidates = [
            Candidate(id=r.id, store=r.store, finished_at=r.finished_at, verified=r.status == BackupStatus.VERIFIED)
            for r in runs.values()
            if r.finished_at is not None
        ]
        keep, delete = plan_rotation(candidates, settings.retention)
        if not dry_run:
            for candidate in delete:
                target.delete(runs[candidate.id].location)
                with unit_of_work(stores.ledger) as repos:
                    repos.backups.delete(candidate.id)
    return PrunePlan(
        kept=tuple(BackupOutcome.of(runs[c.id]) for c in keep),
        deleted=tuple(BackupOutcome.of(runs[c.id]) for c in delete),
        dry_run=dry_run,
        settled=tuple(settled),
    )
