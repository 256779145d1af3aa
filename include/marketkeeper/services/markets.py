"""Market resolution, the same for every adapter: which markets are declared, which a run keeps, and the
market behind a series a user names on the command line.

The declaration is, first match wins: the Airflow Variable ``marketkeeper_markets`` (tasks pass its text as
``override``), the environment variable ``MARKETKEEPER_MARKETS`` (a path, or the same YAML/JSON text), the
project's ``include/config/markets.yaml``. Every resolution syncs the declaration into the ``markets`` table
through :class:`~marketkeeper.repositories.markets.MarketRepository`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.markets import DEFAULT_MARKETS_FILE, MarketSpec, load_markets
from marketkeeper.repositories.markets import SyncReport
from marketkeeper.store_set import StoreConfig

__all__ = [
    "MARKETS_ENV",
    "MARKETS_VARIABLE",
    "declared_markets",
    "market_for",
    "market_label",
    "plan_markets",
    "select_markets",
    "sync_declared",
]

#: The Airflow Variable that, when set, replaces the markets file (same YAML or JSON shape).
MARKETS_VARIABLE: Final = "marketkeeper_markets"
#: The environment variable that, when set, replaces the markets file for the CLI and for tasks alike.
MARKETS_ENV: Final = "MARKETKEEPER_MARKETS"


def market_label(spec: MarketSpec) -> str:
    """``exchange:symbol:timeframe``, the series label used in forms, map indexes and messages."""
    return str(spec.key)


def declared_markets(override: str | None = None) -> list[MarketSpec]:
    """The declared markets: ``override`` (the Variable's text), else ``MARKETKEEPER_MARKETS``, else the file.

    :raises MarketConfigError: the declaration is malformed (every bad entry listed).
    """
    if override:
        return load_markets(override)
    from_env = os.environ.get(MARKETS_ENV, "").strip()
    return load_markets(from_env) if from_env else load_markets(DEFAULT_MARKETS_FILE)


def sync_declared(config: StoreConfig, specs: Sequence[MarketSpec]) -> SyncReport:
    """Bring the ledger's ``markets`` table in step with ``specs``."""
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            return repos.markets.sync(specs)
    finally:
        engine.dispose()


def select_markets(specs: Sequence[MarketSpec], selected: Sequence[str] = ()) -> list[MarketSpec]:
    """The active markets of ``specs``, or the ones ``selected`` names (``exchange:symbol[:timeframe]``).

    :raises ConfigurationError: a selected label matches no declared market.
    """
    wanted = {label.strip() for label in selected if label.strip()}
    if not wanted:
        return [spec for spec in specs if spec.active]
    matches = [s for s in specs if market_label(s) in wanted or f"{s.exchange}:{s.symbol}" in wanted]
    known = {market_label(s) for s in matches} | {f"{s.exchange}:{s.symbol}" for s in matches}
    unknown = sorted(wanted - known)
    if unknown:
        declared = ", ".join(market_label(s) for s in specs) or "none"
        raise ConfigurationError(f"unknown market(s) {', '.join(unknown)}; declared: {declared}")
    return matches


def plan_markets(config: StoreConfig, selected: Sequence[str] = (), *, override: str | None = None) -> list[MarketSpec]:
    """Sync the declaration into the ledger and return the markets a run keeps (see :func:`select_markets`)."""
    specs = declared_markets(override)
    sync_declared(config, specs)
    return select_markets(specs, selected)


def market_for(key: SeriesKey, *, override: str | None = None, source: str | None = None) -> MarketSpec:
    """The declared market of ``key`` (its ``first_date`` and source apply), or an ad-hoc, inactive one.

    :param source: a source the caller asks for instead of the declared one (``--source``).
    """
    for spec in declared_markets(override):
        if spec.key == key:
            return spec if source is None else spec.model_copy(update={"source": source})
    # Not validated as a declaration entry: the key was checked as a series already, and an ad-hoc series
    # may carry any name the stores can hold (the declaration's stricter exchange-id rule is for ccxt).
    return MarketSpec.model_construct(
        exchange=key.exchange,
        symbol=key.symbol,
        base_timeframe=key.timeframe,
        first_date=None,
        source=source or "ccxt",
        active=False,
    )
