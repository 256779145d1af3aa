"""The ``marketkeeper`` command line: the same functions the DAGs call, run in-process."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from marketkeeper.errors import MarketkeeperError
from marketkeeper.settings import get_settings

app = typer.Typer(
    help="Keep a crypto trading system's ledger, candles and caches complete, correct and recoverable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="The ledger database (PostgreSQL, or SQLite when DATABASE_URL is unset).", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the configured ledger to REVISION (default: the newest)."""
    from sqlalchemy.engine import make_url

    from marketkeeper.ledger import migrate

    url = get_settings().ledger_url
    target = make_url(url).render_as_string(hide_password=True)
    try:
        before = migrate.current(url)
        migrate.upgrade(url, revision)
        after = migrate.current(url)
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    except Exception as exc:  # a driver error: print its first line, not a traceback
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _fail(f"could not migrate {target}: {first}") from exc
    if before == after:
        typer.echo(f"{target}: already at {after}")
    else:
        typer.echo(f"{target}: {before or 'empty'} -> {after}")


@db_app.command("current")
def db_current() -> None:
    """Print the ledger's current schema revision."""
    from marketkeeper.ledger import migrate

    typer.echo(migrate.current(get_settings().ledger_url) or "empty (run `marketkeeper db upgrade`)")


@app.command()
def health(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object, not a table.")] = False,
) -> None:
    """Check every configured store: round-trip latency and server version.

    Exits 1 naming each configured store that is down; stores not configured are reported, not failed.
    """
    from marketkeeper.health import check_stores

    try:
        results = check_stores(get_settings())
    except MarketkeeperError as exc:
        raise _fail(str(exc)) from exc
    down = [r.store for r in results if r.configured and not r.ok]
    if as_json:
        typer.echo(
            json.dumps({"ok": not down, "down": down, "stores": [r.as_dict() for r in results]}, indent=2)
        )
    else:
        for r in results:
            if not r.configured:
                typer.echo(f"{r.store:<9} -        {r.error}")
            elif r.ok:
                typer.echo(f"{r.store:<9} ok       {r.latency_ms:7.1f} ms  {r.version}  {r.target}")
            else:
                typer.echo(f"{r.store:<9} DOWN     {r.target}: {r.error}")
    if down:
        raise _fail(f"store(s) down: {', '.join(down)}")
