"""What the ``ohlcv_ingest`` tasks do, kept out of the DAG file: plan the markets, ingest one, name its Asset.

Everything here resolves stores through Airflow Connections (:mod:`marketkeeper.airflow.stores`) and then calls
the same domain functions as ``marketkeeper ingest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from marketkeeper.errors import ConfigurationError
from marketkeeper.ingest import IngestReport, ingest_range
from marketkeeper.markets import MarketSpec, load_markets

#: The Airflow Variable that, when set, replaces ``include/config/markets.yaml`` (same YAML or JSON shape).
MARKETS_VARIABLE: Final = "marketkeeper_markets"
#: The alias every candle-series Asset event is emitted through; downstream DAGs schedule on it.
CANDLES_ALIAS: Final = "marketkeeper_candles"
#: How long an ingestion waits for a backfill of the same series to let go before failing (and retrying).
LOCK_WAIT_SECONDS: Final = 300.0


def declared_markets() -> list[MarketSpec]:
    """The markets the Variable declares, or the project's markets file when the Variable is unset."""
    from airflow.sdk import Variable

    override = Variable.get(MARKETS_VARIABLE, default=None)
    return load_markets(override) if override else load_markets()


def market_label(spec: MarketSpec) -> str:
    return f"{spec.exchange}:{spec.symbol}:{spec.base_timeframe}"


def plan_markets(selected: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Sync the declared markets into the ``markets`` table and return the active ones to ingest.

    :param selected: ``exchange:symbol`` or ``exchange:symbol:timeframe`` labels to restrict the run to
        (the manual-trigger form); empty means every active market.
    :raises ConfigurationError: a selected label matches no declared market.
    """
    from marketkeeper.airflow.stores import ledger_url
    from marketkeeper.ledger import create_ledger_engine, session_scope
    from marketkeeper.market_registry import sync_markets

    specs = declared_markets()
    engine = create_ledger_engine(ledger_url())
    try:
        with session_scope(engine) as session:
            sync_markets(session, specs)
    finally:
        engine.dispose()
    chosen = [spec for spec in specs if spec.active]
    if selected:
        wanted = {label.strip() for label in selected if label.strip()}
        matches = [spec for spec in specs if market_label(spec) in wanted or f"{spec.exchange}:{spec.symbol}" in wanted]
        known = {market_label(s) for s in matches} | {f"{s.exchange}:{s.symbol}" for s in matches}
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigurationError(
                f"unknown market(s) {', '.join(unknown)}; declared: {', '.join(market_label(s) for s in specs)}"
            )
        chosen = matches
    return [spec.model_dump(mode="json") for spec in chosen]


def ingest_market(
    market: Mapping[str, Any],
    start: datetime,
    end: datetime,
    *,
    max_failed_fraction: float,
    airflow: Mapping[str, str] | None = None,
) -> IngestReport:
    """Ingest one planned market over ``[start, end)`` (clipped to its first date) into the configured stores."""
    from marketkeeper.airflow.stores import open_store_set
    from marketkeeper.locks import series_lock
    from marketkeeper.sources import make_source

    spec = MarketSpec.model_validate(market)
    if spec.first_time is not None:
        start = max(start, spec.first_time)
    end = max(start, end)
    source = make_source(spec.source, exchange=spec.exchange)
    with (
        open_store_set() as stores,
        # One writer per series: a backfill of the same window waits or fails instead of interleaving.
        series_lock(
            spec.key,
            redis_client=stores.cache.client if stores.cache else None,
            ledger=stores.ledger,
            wait=LOCK_WAIT_SECONDS,
        ),
    ):
        return ingest_range(
            spec.key,
            start,
            end,
            source=source,
            store=stores.candles,
            ledger=stores.ledger,
            cache=stores.cache,
            max_failed_fraction=max_failed_fraction,
            airflow=airflow,
        )


def series_asset_uri(spec: MarketSpec) -> str:
    """``marketkeeper://candles/{exchange}/{symbol}/{timeframe}``, path parts percent-encoded."""
    parts = (spec.exchange, spec.symbol, str(spec.base_timeframe))
    return "marketkeeper://candles/" + "/".join(quote(part, safe="") for part in parts)


def interval_for(context: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The run's ``[start, end)``: the explicit ``start``/``end`` params when both are set, else the data interval.

    :raises ConfigurationError: only one of start/end is set, or one is not an ISO 8601 time.
    """
    from marketkeeper.timeframes import check_range

    params = context["params"]
    start, end = params.get("start"), params.get("end")
    if start and end:
        try:
            parsed = datetime.fromisoformat(start), datetime.fromisoformat(end)
        except ValueError as exc:
            raise ConfigurationError(f"params start/end must be ISO 8601 times: {exc}") from exc
        # The form says UTC, so a time typed without an offset is UTC.
        aware = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in parsed]
        return check_range(aware[0], aware[1])
    if start or end:
        raise ConfigurationError("set both params start and end, or neither (the data interval is used)")
    interval_start, interval_end = context["data_interval_start"], context["data_interval_end"]
    if interval_start is None or interval_end is None:
        raise ConfigurationError("this run has no data interval: trigger it with params start and end")
    return check_range(interval_start, interval_end)
