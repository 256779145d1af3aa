"""
### ohlcv_gaps

Finds every missing candle of every active market, records it in the gap registry (`candle_gaps`) and
re-fetches what the source has, one mapped task per market and step.

* **detect**: holes from the market's first date (or the last `window_days`) to the last closed candle are
  recorded; holes filled since by any path are marked `filled`.
* **backfill**: `open` gaps, and `failed` gaps past their backoff, are fetched through the same source, quality
  gate and store as `ohlcv_ingest`, under a per-series lock; each outcome is recorded (`filled`,
  `partially_filled`, `source_empty` after repeated empty answers, `failed` with the error). `source_empty`
  gaps rest unless **retry_source_empty** is set.
* **verify**: detects again and updates the registry; the run fails naming each market whose gaps failed.
* **Assets.** Every range a backfill wrote emits an event through the alias `marketkeeper_candles`, as
  ingestion does (extra: market, timeframe, start, end, rows, origin=backfill).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task

CANDLES_ALIAS = AssetAlias("marketkeeper_candles")


@task
def plan(**context: Any) -> list[dict[str, Any]]:
    """Sync the declared markets into the ledger and return the active (or selected) ones."""
    from marketkeeper.airflow.gaps import plan_markets

    return plan_markets(context["params"]["markets"])


@task(map_index_template="{{ market_label }}")
def detect(market: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Detect one market's holes and record them."""
    from marketkeeper.airflow.gaps import detect_market
    from marketkeeper.airflow.ingestion import market_label
    from marketkeeper.markets import MarketSpec

    # The map index template reads the live context; ``context`` here is a copy of it.
    get_current_context()["market_label"] = market_label(MarketSpec.model_validate(market))
    return detect_market(market, window_days=context["params"]["window_days"])


@task(pool="exchange_api", outlets=[CANDLES_ALIAS], map_index_template="{{ market_label }}")
def backfill(detected: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Backfill one market's due gaps; emit an Asset event per range written."""
    from airflow.sdk import Asset

    from marketkeeper.airflow.gaps import asset_events, backfill_market
    from marketkeeper.airflow.ingestion import market_label
    from marketkeeper.markets import MarketSpec

    spec = MarketSpec.model_validate(detected["market"])
    get_current_context()["market_label"] = market_label(spec)
    ti = context["ti"]
    summary, report = backfill_market(
        detected,
        retry_source_empty=bool(context["params"]["retry_source_empty"]),
        max_failed_fraction=float(context["params"]["max_failed_fraction"]),
        airflow={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id},
    )
    for name, uri, extra in asset_events(spec, report):
        context["outlet_events"][CANDLES_ALIAS].add(Asset(name=name, uri=uri), extra=extra)
    return {"market": detected["market"], "backfill": summary}


@task(map_index_template="{{ market_label }}")
def verify(result: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Detect again over the same window and update the registry; returns the backfill summary."""
    from marketkeeper.airflow.gaps import detect_market

    get_current_context()["market_label"] = result["backfill"]["label"]
    after = detect_market(result["market"], window_days=context["params"]["window_days"])
    return {**result["backfill"], "missing_after": after["detection"]["missing"]}


@task
def summary(reports: list[dict[str, Any]]) -> dict[str, int]:
    """Log one line per market; fail the run if any market's gaps failed."""
    import logging

    from marketkeeper.airflow.gaps import raise_on_failures

    log = logging.getLogger("airflow.task")
    for r in reports:
        log.info(
            "%s: %s gap(s) attempted, %s filled, %s written, %s failed, %s missing after",
            r["label"], r["gaps_attempted"], r["filled"], r["written"], r["failed"], r["missing_after"],
        )  # fmt: skip
    return raise_on_failures(reports)


@dag(
    dag_id="ohlcv_gaps",
    schedule="@daily",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    doc_md=__doc__,
    tags=["marketkeeper", "ohlcv", "gaps"],
    default_args={
        "owner": "marketkeeper",
        "retries": 2,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    params={
        "markets": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Markets",
            description="exchange:symbol or exchange:symbol:timeframe, one per line; empty = every active market.",
        ),
        "window_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Window (days)",
            description="Check only the last N days; empty = from each market's first date.",
        ),
        "retry_source_empty": Param(
            False,
            type="boolean",
            title="Retry source_empty gaps",
            description="Also retry gaps the source had nothing for (normally they rest for 30 days).",
        ),
        "max_failed_fraction": Param(0.01, type="number", minimum=0, maximum=1, title="Max failed fraction"),
    },
)
def ohlcv_gaps() -> None:
    detected = detect.expand(market=plan())
    summary(verify.expand(result=backfill.expand(detected=detected)))


ohlcv_gaps()
