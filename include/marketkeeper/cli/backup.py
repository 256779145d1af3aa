"""``marketkeeper backup run|list|verify|drill|restore|prune``: adapters over :mod:`marketkeeper.services.backups`,
the functions the ``backups`` and ``restore_drill`` DAGs call too."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from marketkeeper.cli.common import TableFormat, fail, print_listing, store_config, user_errors

if TYPE_CHECKING:
    from marketkeeper.services.backups import BackupOutcome

_Done = TypeVar("_Done")

backup_app = typer.Typer(
    help="Backups of the ledger, InfluxDB and Redis, and restore drills that prove them.", no_args_is_help=True
)


class StoreName(enum.StrEnum):
    """A store that can be backed up."""

    LEDGER = "ledger"
    INFLUXDB = "influxdb"
    REDIS = "redis"


StoresOpt = Annotated[
    list[StoreName] | None,
    typer.Option("--store", help="A store to include (repeat it); default: every configured store."),
]


def _object_storage() -> None:
    """Import Airflow's object storage (backups go through it) keeping the CLI's logging: Airflow's import
    replaces the root handlers with an INFO handler on stdout, which would mix log lines into the output."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import airflow.sdk  # noqa: F401

    root.handlers[:] = handlers
    root.setLevel(level)


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size:,} B"


def _lines(b: BackupOutcome) -> list[str]:
    when = f"{b.started_at:%Y-%m-%d %H:%M:%S}Z"
    line = f"{b.id:>5}  {b.store:<8} {b.status:<12} {when}  {_size(b.size):>14}  {b.location}"
    extra = []
    if b.sha256:
        extra.append(f"sha256 {b.sha256}")
    if b.drilled_at is not None:
        extra.append(
            f"drilled {b.drilled_at:%Y-%m-%d %H:%M}Z RTO {b.rto_seconds or 0:.1f} s RPO {b.rpo_seconds or 0:.0f} s"
        )
    problem = b.drill_error or b.error
    lines = [line]
    if extra:
        lines.append("       " + "; ".join(extra))
    if problem:
        lines.append(f"       error: {problem}")
    return lines


def _report(outcomes: Sequence[object], done: type[_Done], describe: Callable[[_Done], str]) -> None:
    """Print each store's outcome (done, or skipped and why); exit 1 naming every store that failed."""
    from marketkeeper.services.backups import StoreSkipped

    failed = []
    for outcome in outcomes:
        if isinstance(outcome, done):
            typer.echo(describe(outcome))
        elif isinstance(outcome, StoreSkipped):
            typer.echo(str(outcome))
        else:
            failed.append(str(outcome))
    if failed:
        fail("; ".join(failed))


@backup_app.command("run")
def run(stores: StoresOpt = None) -> None:
    """Back up each store now (a store that is not configured is skipped); exits 1 naming every store whose
    backup failed."""
    from marketkeeper.services.backups import BackupOutcome, run_backups

    _object_storage()

    with user_errors():
        outcomes = run_backups(store_config(), [str(s) for s in stores or []])
    _report(
        outcomes,
        BackupOutcome,
        lambda o: f"{o.store}: backup {o.id} succeeded, {_size(o.size)}, sha256 {o.sha256}, at {o.location}",
    )


@backup_app.command("list")
def list_(
    store: Annotated[StoreName | None, typer.Option("--store", help="Only this store.")] = None,
    output: Annotated[TableFormat, typer.Option("--format", "-f", help="How to print it.")] = TableFormat.TABLE,
) -> None:
    """The backup catalog, newest first (json: one object per backup)."""
    from marketkeeper.services.backups import list_backups

    with user_errors():
        found = list_backups(store_config(), str(store) if store else None)
    print_listing(found, output, as_json=lambda b: b.as_dict(), lines=_lines, empty="no backups recorded")


@backup_app.command("verify")
def verify(backup_id: Annotated[int, typer.Argument(help="The backup's id (`backup list`).")]) -> None:
    """Re-hash a stored backup against the sha256 recorded when it was written (a drill proves it restores)."""
    from marketkeeper.services.backups import verify_backup

    _object_storage()

    with user_errors():
        outcome = verify_backup(store_config(), backup_id)
    typer.echo(f"backup {outcome.id} ({outcome.store}): sha256 {outcome.sha256} matches, {_size(outcome.size)}")


@backup_app.command("drill")
def drill(stores: StoresOpt = None) -> None:
    """Restore each store's newest backup into a scratch target, compare it with the figures recorded at
    backup time, and drop the scratch target (a store not configured, or without a backup yet, is skipped);
    exits 1 naming each store that failed and its first difference."""
    from marketkeeper.services.backups import DrillOutcome, drill_stores

    _object_storage()

    with user_errors():
        outcomes = drill_stores(store_config(), [str(s) for s in stores or []])
    _report(
        outcomes,
        DrillOutcome,
        lambda o: (
            f"{o.store}: backup {o.backup_id} verified, restored in {o.rto_seconds or 0:.1f} s (RTO), "
            f"{o.rpo_seconds:.0f} s old (RPO)"
        ),
    )


@backup_app.command("restore")
def restore(
    backup_id: Annotated[int, typer.Argument(help="The backup's id (`backup list`).")],
    into: Annotated[
        str,
        typer.Option(
            "--into",
            help="Ledger on PostgreSQL, InfluxDB: the database to restore into (new unless --overwrite). "
            "Ledger on SQLite: the new SQLite file. Redis: the file to write the RDB to.",
        ),
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the contents of an existing target.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --overwrite.")] = False,
) -> None:
    """Restore a backup for real, checking its sha256 first; refuses an existing target without --overwrite."""
    from marketkeeper.services.backups import restore_backup

    _object_storage()

    if overwrite and not yes:
        typer.confirm(f"Replace the contents of {into!r} with backup {backup_id}? This cannot be undone", abort=True)
    with user_errors():
        said = restore_backup(store_config(), backup_id, into, overwrite=overwrite)
    typer.echo(f"backup {backup_id}: {said}")


@backup_app.command("prune")
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be deleted.")] = False,
) -> None:
    """Grandfather-father-son rotation (MARKETKEEPER_BACKUP_KEEP_DAILY/WEEKLY/MONTHLY, default 7/4/6); never
    deletes a store's newest verified backup."""
    from marketkeeper.services.backups import prune_backups

    _object_storage()

    with user_errors():
        plan = prune_backups(store_config(), dry_run=dry_run)
    if plan.settled:
        ids = ", ".join(map(str, plan.settled))
        typer.echo(f"settled {len(plan.settled)} abandoned backup(s) as failed (their process ended): {ids}")
    verb = "would delete" if dry_run else "deleted"
    for b in plan.deleted:
        typer.echo(f"{verb} backup {b.id} ({b.store}, {b.status}, {b.finished_at:%Y-%m-%d %H:%M}Z) {b.location}")
    typer.echo(f"{verb} {len(plan.deleted)}, kept {len(plan.kept)}")


def register(app: typer.Typer) -> None:
    """Add ``marketkeeper backup ...`` to ``app``."""
    app.add_typer(backup_app, name="backup")
