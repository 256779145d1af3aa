"""The ``ohlcv_downsample`` tasks: which ranges a run recomputes (the triggering candle Asset events, else the
pending downsamples), cut into batches of markets, each run through
:func:`~marketkeeper.services.downsample.downsample_markets`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from marketkeeper.markets import MarketSpec
from marketkeeper.services.downsample import DownsampleReport, DownsampleRequest
from marketkeeper.timeframes import Timeframe

__all__ = ["downsample_batch", "event_extras", "plan_downsample"]


def event_extras(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``extra`` of every Asset event that triggered this run (none for a timed or manual run)."""
    triggering = context.get("triggering_asset_events") or {}
    return [dict(event.extra or {}) for events in triggering.values() for event in events]


def _request_dict(request: DownsampleRequest) -> dict[str, Any]:
    return {
        "market": request.market.model_dump(mode="json"),
        "start": request.start.isoformat(),
        "end": request.end.isoformat(),
        "tiers": None if request.tiers is None else [str(t) for t in request.tiers],
    }


def _request(data: Mapping[str, Any]) -> DownsampleRequest:
    tiers = data.get("tiers")
    return DownsampleRequest(
        MarketSpec.model_validate(data["market"]),
        datetime.fromisoformat(data["start"]),
        datetime.fromisoformat(data["end"]),
        None if tiers is None else tuple(Timeframe.parse(t) for t in tiers),
    )


def plan_downsample(extras: Iterable[Mapping[str, Any]], size: object = None) -> list[dict[str, Any]]:
    """The run's requests in batches of markets of one exchange (``batch_size``, as the other DAGs cut them):
    the triggering events' ranges, or, when none triggered the run (the daily pass, a manual run), every pending
    downsample (base writes not yet recomputed: a failed run's, a CLI ingest's, a bucket that had not closed)."""
    from marketkeeper.airflow.batches import batch_size
    from marketkeeper.airflow.ingestion import declared_override
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.batch import batch_markets
    from marketkeeper.services.downsample import pending_requests, requests_from_events
    from marketkeeper.services.markets import declared_markets

    config = store_config()
    markets = declared_markets(declared_override())
    extras = list(extras)
    requests = requests_from_events(extras, markets) if extras else pending_requests(config, markets)
    by_market: dict[str, list[DownsampleRequest]] = {}
    for request in requests:
        by_market.setdefault(str(request.market.key), []).append(request)
    specs = [r[0].market for r in by_market.values()]
    batches = []
    for batch in batch_markets(specs, batch_size(size)):
        chosen = [req for spec in batch for req in by_market[str(spec.key)]]
        label = f"{batch[0].exchange} ({len(batch)}): " + ", ".join(f"{s.symbol}:{s.base_timeframe}" for s in batch)
        batches.append({"label": label[:250], "requests": [_request_dict(r) for r in chosen]})
    return batches


def _result(report: DownsampleReport) -> Any:
    from marketkeeper.airflow.batches import MarketResult

    return MarketResult(summary=report.as_dict(), events=[])


def downsample_batch(batch: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One mapped task: every request of ``batch`` on one set of stores; fails at the end naming each failed one
    (a retry redoes only those, see :func:`~marketkeeper.airflow.batches.checkpoint_for`)."""
    from marketkeeper.airflow.batches import checkpoint_for, finish_batch
    from marketkeeper.airflow.dag_glue import fail_fast, set_map_label
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.downsample import downsample_markets

    set_map_label(batch["label"])
    with fail_fast():
        requests = [_request(r) for r in batch["requests"]]
        config = store_config()
    report = downsample_markets(config, requests, checkpoint=checkpoint_for(context, _result))
    return finish_batch(context, batch, report, _result)
