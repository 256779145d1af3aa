"""The Airflow side of ``ohlcv_gaps``: a task's params into one :func:`~marketkeeper.services.gaps.backfill_market`
call per market (detect, fill what is due, detect again), its report into an XCom summary and Asset events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, cast

from marketkeeper.airflow.ingestion import asset_event
from marketkeeper.errors import ConfigurationError, MarketkeeperError
from marketkeeper.markets import MarketSpec

if TYPE_CHECKING:
    from marketkeeper.airflow.batches import MarketResult
    from marketkeeper.gaps.backfill import BackfillReport
    from marketkeeper.services.gaps import BackfillRequest

__all__ = [
    "GapsFailedError",
    "GapsSummary",
    "raise_on_failures",
    "repair_batch",
    "repair_market",
    "repair_result",
    "window_for",
]


class GapsFailedError(MarketkeeperError):
    """Some markets' gaps failed to backfill; each gap is recorded ``failed`` in the registry with its error."""


class GapsSummary(TypedDict):
    """The XCom of one ``ohlcv_gaps.repair`` task."""

    label: str
    window_start: str
    window_end: str
    origin: str
    gaps_attempted: int
    filled: int
    partially_filled: int
    source_empty: int
    failed: int
    written: int
    missing_after: int
    errors: list[str]


def _time(value: object, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigurationError(f"param {name} {value!r} is not an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def window_for(params: Mapping[str, Any], spec: MarketSpec, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The detection window a run's params ask for: ``start``/``end``, or the last ``window_days``, else
    ``(None, None)`` (from the market's first date to the last closed candle). Never before ``first_date``.

    :raises ConfigurationError: a time is not ISO 8601, or ``start``/``end`` and ``window_days`` are both set.
    """
    start, end = _time(params.get("start"), "start"), _time(params.get("end"), "end")
    days = params.get("window_days")
    if days and (start or end):
        raise ConfigurationError("set either params start/end or window_days, not both")
    if days:
        start = now - timedelta(days=int(days))
    if start is not None and spec.first_time is not None:
        start = max(start, spec.first_time)
    return start, end


def _request(params: Mapping[str, Any], spec: MarketSpec, now: datetime) -> BackfillRequest:
    from marketkeeper.services.gaps import BackfillRequest

    start, end = window_for(params, spec, now)
    return BackfillRequest(
        spec,
        start,
        end,
        retry_source_empty=bool(params.get("retry_source_empty")),
        max_failed_fraction=float(params.get("max_failed_fraction", 0.01)),
    )


def repair_result(report: BackfillReport) -> MarketResult:
    """What a task keeps of one market's repair: its XCom summary and one Asset event per range written."""
    summary: GapsSummary = {
        "label": str(report.key),
        "window_start": report.start.isoformat(),
        "window_end": report.end.isoformat(),
        "origin": report.origin,
        "gaps_attempted": report.gaps_attempted,
        "filled": report.filled,
        "partially_filled": report.partially_filled,
        "source_empty": report.source_empty,
        "failed": report.failed,
        "written": report.written,
        "missing_after": report.missing_after,
        "errors": report.errors[:10],
    }
    events = [asset_event(report.key, w.start, w.end, w.rows, origin="backfill") for w in report.written_ranges]
    result: MarketResult = {"summary": dict(summary), "events": events}
    return result


def repair_market(
    market: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    airflow: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> tuple[GapsSummary, list[dict[str, Any]]]:
    """Backfill one market's due gaps over the run's window; its summary and one Asset event per range written.

    Gap failures do not raise here: each is recorded on its gap and returned, then turned into a failed run
    by :func:`raise_on_failures`, so that the candles written before still get their Asset events.
    """
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.gaps import BackfillError, backfill_market

    clock = now or datetime.now(UTC)
    request = _request(params, MarketSpec.model_validate(market), clock)
    try:
        report = backfill_market(store_config(), request, airflow=airflow, now=clock)
    except BackfillError as exc:
        report = exc.report
    result = repair_result(report)
    return cast(GapsSummary, result["summary"]), result["events"]


def repair_batch(
    batch: Mapping[str, Any], context: Mapping[str, Any], *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """One ``ohlcv_gaps.repair`` task: :func:`repair_market`'s work for every market of ``batch`` on one set of
    stores; the completed markets' summaries (see :func:`~marketkeeper.airflow.batches.finish_batch`).

    Failed gaps leave their market completed (recorded in the registry, failed later by
    :func:`raise_on_failures`); a market whose backfill raised anything else fails the task at the end.
    """
    from marketkeeper.airflow.batches import checkpoint_for, finish_batch
    from marketkeeper.airflow.dag_glue import airflow_ids, fail_fast, set_map_label
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.batch import backfill_markets

    set_map_label(batch["label"])
    clock = now or datetime.now(UTC)
    with fail_fast():
        requests = [_request(context["params"], MarketSpec.model_validate(m), clock) for m in batch["markets"]]
        config = store_config()
    report = backfill_markets(
        config, requests, airflow=airflow_ids(context), checkpoint=checkpoint_for(context, repair_result), now=clock
    )
    return finish_batch(context, batch, report, repair_result)


def raise_on_failures(reports: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The run's totals; raises :class:`GapsFailedError` naming each market with failed gaps."""
    totals = {"markets": 0, "gaps_attempted": 0, "filled": 0, "written": 0, "failed": 0, "missing_after": 0}
    failures = []
    for report in reports:
        totals["markets"] += 1
        for name in ("gaps_attempted", "filled", "written", "failed", "missing_after"):
            totals[name] += int(report[name])
        if int(report["failed"]):
            failures.append(f"{report['label']}: {report['failed']} gap(s) failed, first: {report['errors'][0]}")
    if failures:
        raise GapsFailedError("; ".join(failures))
    return totals
