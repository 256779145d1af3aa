"""The ``marketkeeper`` command line: thin adapters over :mod:`marketkeeper.services`, run in-process.

One module per command group: :mod:`.db` (ledger migrations, InfluxDB database), :mod:`.stores` (``health``,
``candles``), :mod:`.ingest`, :mod:`.gaps` (``gaps``, ``gaps detect``, ``backfill``), :mod:`.ledger`
(``rollup``, ``demo-seed``), :mod:`.downsample` (``downsample``, ``retention``, ``maintenance``),
:mod:`.backup`, :mod:`.status`, :mod:`.serve`.
"""

from __future__ import annotations

import gc
import logging
from typing import Annotated

import typer

from marketkeeper.cli import backup, db, downsample, gaps, ingest, ledger, serve, status, stores

app = typer.Typer(
    help="Keep a crypto trading system's ledger, candles and caches complete, correct and recoverable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Libraries that log on their own terms: Great Expectations announces its temporary docs site at INFO and
    # urllib3 each retry at WARNING; the command's own one-line error says what matters.
    logging.getLogger("great_expectations").setLevel(max(level, logging.WARNING))
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose else logging.ERROR)


app.add_typer(db.app, name="db")
app.add_typer(gaps.gaps_app, name="gaps")
for module in (stores, ingest, gaps, ledger, downsample, backup, status, serve):
    module.register(app)


#: The cyclic garbage collector's generation thresholds for a command (Python's default is 700, 10, 10).
_GC_THRESHOLDS = (50_000, 20, 20)


def main() -> None:
    """The console script: ``marketkeeper ...``."""
    # A command imports its stores' libraries (pandas, SQLAlchemy, psycopg) when it runs: millions of
    # allocations and almost no garbage, over which collecting every 700 cost a sixth of a one-day `candles`.
    # Cycles are still collected, less often; set here, for the command's process alone, not on import.
    gc.set_threshold(*_GC_THRESHOLDS)
    app()


__all__ = ["app", "main"]
