"""``marketkeeper db``: migrate the ledger and create the candle InfluxDB database, the explicit setup step."""

from __future__ import annotations

from typing import Annotated

import typer

from marketkeeper.cli.common import fail, user_errors
from marketkeeper.errors import MarketkeeperError, first_line

app = typer.Typer(
    help="The ledger database (PostgreSQL, or SQLite when DATABASE_URL is unset) and the InfluxDB database.",
    no_args_is_help=True,
)


@app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the configured ledger to REVISION (default: the newest), and create the InfluxDB database
    (INFLUXDB_BUCKET) when InfluxDB is configured: nothing else ever creates it."""
    from marketkeeper.ledger import migrate
    from marketkeeper.settings import get_settings
    from marketkeeper.store_set import StoreConfig

    with user_errors():
        config = StoreConfig.from_settings(get_settings())
    target = config.ledger_target
    try:
        before = migrate.current(config.ledger_url)
        migrate.upgrade(config.ledger_url, revision)
        after = migrate.current(config.ledger_url)
    except MarketkeeperError as exc:
        fail(first_line(exc))
    except Exception as exc:  # a driver error: its first line, not a traceback
        fail(f"could not migrate {target}: {first_line(exc)}")
    typer.echo(f"{target}: already at {after}" if before == after else f"{target}: {before or 'empty'} -> {after}")
    if config.influxdb is not None:
        with user_errors():
            client = config.influxdb()
            try:
                created = client.create_database()
            finally:
                client.close()
        typer.echo(f"InfluxDB database {client.database!r} at {client.url}: {'created' if created else 'ready'}")


@app.command("current")
def current() -> None:
    """Print the ledger's current schema revision."""
    from marketkeeper.ledger import migrate
    from marketkeeper.settings import get_settings

    with user_errors():
        revision = migrate.current(get_settings().ledger_url)
    typer.echo(revision or "empty (run `marketkeeper db upgrade`)")
