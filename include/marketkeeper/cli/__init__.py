"""The ``marketkeeper`` command line: thin adapters over :mod:`marketkeeper.services`, run in-process.

One module per command group: :mod:`.db` (ledger migrations, InfluxDB database), :mod:`.stores` (``health``,
``candles``), :mod:`.ingest`, :mod:`.gaps` (``gaps``, ``gaps detect``, ``backfill``), :mod:`.ledger`
(``rollup``, ``demo-seed``).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from marketkeeper.cli import db, gaps, ingest, ledger, stores

app = typer.Typer(
    help="Keep a crypto trading system's ledger, candles and caches complete, correct and recoverable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


app.add_typer(db.app, name="db")
app.add_typer(gaps.gaps_app, name="gaps")
for module in (stores, ingest, gaps, ledger):
    module.register(app)


def main() -> None:
    """The console script: ``marketkeeper ...``."""
    app()


__all__ = ["app", "main"]
