"""The Airflow side of candle ingestion and backfill: turn a task's context into a service call and a report
into Asset events. The work itself is :mod:`marketkeeper.services` (the same functions the CLI calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import quote

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.markets import MarketSpec

if TYPE_CHECKING:
    from marketkeeper.airflow.batches import MarketBatch, MarketResult
    from marketkeeper.ingest import IngestReport

__all__ = [
    "IngestSummary",
    "asset_event",
    "declared_override",
    "ingest_batch",
    "ingest_market",
    "ingest_result",
    "interval_for",
    "plan_batches",
    "plan_markets",
    "series_asset_uri",
]


class IngestSummary(TypedDict):
    """The XCom of one ``ohlcv_ingest.ingest`` task."""

    market: str
    timeframe: str
    start: str
    end: str
    fetched: int
    written: int
    quarantined: int
    skipped: int


def declared_override() -> str | None:
    """The Airflow Variable's markets declaration, if set (it overrides the environment and the file)."""
    from airflow.sdk import Variable

    from marketkeeper.services.markets import MARKETS_VARIABLE

    value = Variable.get(MARKETS_VARIABLE, default=None)
    return str(value) if value else None


def plan_markets(selected: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Sync the declaration into the ledger; the markets this run keeps, as XCom-able dicts.

    :raises ConfigurationError: a market cannot run here, e.g. a ``files:`` source under a distributed
        executor without a shared filesystem (refused at planning, once, before any task runs).
    """
    from marketkeeper.airflow.stores import check_distributable, store_config
    from marketkeeper.services.markets import plan_markets as plan

    config = store_config()
    chosen = plan(config, selected, override=declared_override())
    check_distributable(config, [spec.source for spec in chosen])
    return [spec.model_dump(mode="json") for spec in chosen]


def plan_batches(selected: Sequence[str] = (), size: object = None) -> list[MarketBatch]:
    """Sync the declaration into the ledger; the markets this run keeps, cut into batches of ``size`` (see
    :func:`~marketkeeper.airflow.batches.batch_size`): what the mapped tasks map over."""
    from marketkeeper.airflow.batches import batch_size
    from marketkeeper.airflow.batches import plan_batches as cut

    return cut(plan_markets(selected), batch_size(size))


def series_asset_uri(key: SeriesKey) -> str:
    """``marketkeeper://candles/{exchange}/{symbol}/{timeframe}``, path parts percent-encoded."""
    parts = (key.exchange, key.symbol, str(key.timeframe))
    return "marketkeeper://candles/" + "/".join(quote(part, safe="") for part in parts)


def asset_event(key: SeriesKey, start: datetime, end: datetime, rows: int, *, origin: str) -> dict[str, Any]:
    """The Asset event announcing that ``rows`` candles of ``key`` with open times in ``[start, end)`` were
    written (``origin``: ``ingest`` or ``backfill``). Downstream DAGs read exactly these ``extra`` keys."""
    return {
        "name": f"candles:{key}",
        "uri": series_asset_uri(key),
        "extra": {
            "market": f"{key.exchange}:{key.symbol}",
            "timeframe": str(key.timeframe),
            "start": start.isoformat(),
            "end": end.isoformat(),
            "rows": rows,
            "origin": origin,
        },
    }


def ingest_result(report: IngestReport) -> MarketResult:
    """What a task keeps of one market's ingestion: its XCom summary and its Asset event (if it wrote)."""
    key = report.key
    events = []
    if report.written and report.first_written is not None and report.last_written is not None:
        written_end = key.timeframe.next_open(report.last_written)
        events.append(asset_event(key, report.first_written, written_end, report.written, origin="ingest"))
    result: MarketResult = {"summary": report.as_dict(), "events": events}
    return result


def ingest_market(
    market: Mapping[str, Any],
    start: datetime,
    end: datetime,
    *,
    max_failed_fraction: float,
    airflow: Mapping[str, str] | None = None,
) -> tuple[IngestSummary, list[dict[str, Any]]]:
    """Ingest one planned market over open times ``[start, end)``; its summary and Asset events."""
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.ingest import IngestRequest, ingest_series

    spec = MarketSpec.model_validate(market)
    report = ingest_series(
        store_config(),
        IngestRequest(spec, start, end, max_failed_fraction=max_failed_fraction),
        airflow=airflow,
    )
    result = ingest_result(report)
    return cast(IngestSummary, result["summary"]), result["events"]


def ingest_batch(batch: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One ``ohlcv_ingest.ingest`` task: every market of ``batch`` over its interval (:func:`interval_for`), on
    one set of stores; the completed markets' summaries (see :func:`~marketkeeper.airflow.batches.finish_batch`).

    :raises AirflowFailException: a bad form or connection (no retry can fix it).
    :raises BatchFailedError: some markets failed; the others were written and announced.
    """
    from marketkeeper.airflow.batches import checkpoint_for, finish_batch
    from marketkeeper.airflow.dag_glue import airflow_ids, fail_fast, set_map_label
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.batch import ingest_markets
    from marketkeeper.services.ingest import IngestRequest

    set_map_label(batch["label"])
    fraction = float(context["params"]["max_failed_fraction"])
    with fail_fast():
        requests = [
            IngestRequest(MarketSpec.model_validate(m), *interval_for(context, m), max_failed_fraction=fraction)
            for m in batch["markets"]
        ]
        config = store_config()
    report = ingest_markets(
        config, requests, airflow=airflow_ids(context), checkpoint=checkpoint_for(context, ingest_result)
    )
    return finish_batch(context, batch, report, ingest_result)


def interval_for(context: Mapping[str, Any], market: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The open times ``[start, end)`` one run ingests for ``market``.

    With both ``start`` and ``end`` params (a manual run), those open times. Otherwise the candles that
    *closed* during the data interval (:func:`~marketkeeper.services.ingest.closed_in_interval`), so that
    hourly runs ingest 4h, 1d, 1w and 1M candles too, each exactly once.

    :raises ConfigurationError: only one of start/end is set, one is not an ISO 8601 time, or the run has
        neither params nor a data interval.
    """
    from marketkeeper.services.ingest import closed_in_interval
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
    timeframe = MarketSpec.model_validate(market).base_timeframe
    return closed_in_interval(timeframe, interval_start, interval_end)
