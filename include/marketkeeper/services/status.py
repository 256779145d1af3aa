"""The ops status, computed once for every view: ``marketkeeper status``, the ``ops_monitor`` DAG, the
Airflow UI page, its JSON and ``/metrics`` (:func:`ops_status`); and the alert life cycle the DAG drives
(:func:`sync_alerts`), the task callbacks (:func:`resolve_task_failures`) and an operator ends by hand
(:func:`acknowledge_alert`).

Figures per series come from the declared markets (:mod:`marketkeeper.services.markets`), the candle store
(newest open time), the gap registry and the quality evidence in the ledger; per store from the one checker
(:func:`marketkeeper.health.check_stores`); backups from the backup catalog when there is one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from marketkeeper.errors import MarketkeeperError, first_line
from marketkeeper.ops.figures import BackupFigures, Breach, OperatorAlert, OpsStatus, SeriesFigures
from marketkeeper.ops.slo import Slos, breaches
from marketkeeper.store_set import StoreConfig

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from marketkeeper.ledger.models import Alert

__all__ = [
    "AlertSync",
    "acknowledge_alert",
    "deliver_alerts",
    "ops_status",
    "resolve_task_failures",
    "sync_alerts",
]

log = logging.getLogger(__name__)

#: Gaps still to fill: what the ops figures count as open.
_OPEN_GAP_STATUSES = ("open", "partially_filled", "failed")
#: The window of the quality figures.
QUALITY_WINDOW = timedelta(hours=24)


def ops_status(
    config: StoreConfig,
    *,
    now: datetime | None = None,
    slos: Slos | None = None,
    markets_override: str | None = None,
) -> OpsStatus:
    """Measure every series, store and backup and list the SLO breaches.

    A store that is down is a figure (and a breach), not an error: the document is still produced, with the
    series that could not be read marked ``error``.

    :param now: the clock (tests move it); default the current UTC time.
    :param slos: the thresholds; default :meth:`Slos.from_env`.
    :param markets_override: the markets declaration text (the Airflow Variable), as :func:`declared_markets` takes it.
    :raises MarketConfigError: the markets declaration is malformed.
    :raises ConfigurationError: an SLO variable or a store's settings are malformed.
    """
    from marketkeeper.health import check_stores
    from marketkeeper.services.markets import declared_markets

    now = datetime.now(UTC) if now is None else now
    slos = Slos.from_env() if slos is None else slos
    # Each active market's base series, then the tiers it derives (issue 11), each a series of its own.
    keys = [
        key
        for spec in declared_markets(markets_override)
        if spec.active
        for key in (spec.key, *(spec.tier_key(tf) for tf in spec.tiers))
    ]
    stores = check_stores(config)
    up = {s.store: s.ok for s in stores}
    backups: list[BackupFigures] | None = None
    alerts: list[OperatorAlert] = []
    if not up.get("ledger", False):
        cause = next(s.error for s in stores if s.store == "ledger")
        series = [_unreadable(key, f"ledger down: {cause}") for key in keys]
    elif config.influxdb is not None and not up.get("influxdb", False):
        series = [_unreadable(key, "influxdb down") for key in keys]
    else:
        series, backups, alerts = _measure(config, keys, now, slos)
    return OpsStatus(
        generated_at=now,
        series=series,
        stores=stores,
        backups=backups,
        breaches=breaches(slos, now, series, stores, backups or []),
        slos=slos.as_dict(),
        alerts=alerts,
    )


def _unreadable(key: object, cause: str) -> SeriesFigures:
    from marketkeeper.candles import SeriesKey

    assert isinstance(key, SeriesKey)
    return SeriesFigures(key.exchange, key.symbol, str(key.timeframe), status="error", error=cause)


def _measure(
    config: StoreConfig, keys: Sequence[object], now: datetime, slos: Slos
) -> tuple[list[SeriesFigures], list[BackupFigures] | None, list[OperatorAlert]]:
    from dataclasses import replace

    from marketkeeper.candles import SeriesKey
    from marketkeeper.repositories import unit_of_work
    from marketkeeper.repositories.quality import SeriesQualityActivity
    from marketkeeper.store_set import StoreSet

    # Reading needs neither the cache nor its client.
    with StoreSet.open(replace(config, redis=None)) as stores:
        with unit_of_work(stores.ledger) as repos:
            activity = repos.quality.activity_since(now - QUALITY_WINDOW)
            gaps: dict[tuple[str, str, str], list[tuple[int, datetime]]] = {}
            from marketkeeper.ledger.models import GapStatus

            for status in _OPEN_GAP_STATUSES:
                for market, gap in repos.gaps.with_markets(status=GapStatus(status)):
                    gaps.setdefault((market.exchange, market.symbol, gap.timeframe), []).append(
                        (gap.missing_count, gap.first_seen)
                    )
            backups = _backups(repos.session)
            alerts = [_alert(a) for a in repos.alerts.open_operator()]
        series = []
        for key in keys:
            assert isinstance(key, SeriesKey)
            triple = (key.exchange, key.symbol, str(key.timeframe))
            seen = activity.get(triple, SeriesQualityActivity())
            open_gaps = gaps.get(triple, [])
            base = SeriesFigures(
                *triple,
                open_gaps=len(open_gaps),
                missing_candles=sum(n for n, _ in open_gaps),
                oldest_gap_seen=min((seen_at for _, seen_at in open_gaps), default=None),
                quality_runs_24h=seen.runs,
                rows_checked_24h=seen.rows_checked,
                rows_failed_24h=seen.rows_failed,
                quarantined_24h=seen.quarantined,
                last_run_at=seen.last_run_at,
                last_run_by=None if seen.last_run_at is None else (seen.last_dag_id or "cli"),
                last_run_ok=seen.last_success,
            )
            try:
                last = stores.candles.last_open_time(key)
            except MarketkeeperError as exc:
                series.append(replace(base, status="error", error=first_line(exc)))
                continue
            series.append(_freshness(base, key, last, now, slos))
    return series, backups, alerts


def _alert(row: Alert) -> OperatorAlert:
    return OperatorAlert(
        id=str(row.id),
        kind=row.alert_type,
        severity=str(row.severity),
        subject=row.subject,
        title=row.title,
        message=row.message,
        since=row.since,
    )


def _freshness(base: SeriesFigures, key: object, last: datetime | None, now: datetime, slos: Slos) -> SeriesFigures:
    from dataclasses import replace

    from marketkeeper.candles import SeriesKey

    assert isinstance(key, SeriesKey)
    tf = key.timeframe
    limit = slos.lag_limit(str(tf))
    if last is None:
        return replace(base, status="stale")
    newest_closed = tf.last_closed_open(now)
    lag = tf.count(tf.next_open(last), tf.next_open(newest_closed)) if last < newest_closed else 0
    stale = lag > limit
    status = "stale" if stale else ("gaps" if base.open_gaps else "ok")
    # The lag first exceeded the limit when candle number limit+1 after the last one closed.
    since = tf.add(last, limit + 2) if stale else None
    return replace(base, last_candle=last, lag_candles=lag, stale_since=since, status=status)


def _backups(session: Session) -> list[BackupFigures] | None:
    """The backup catalog's newest backups per store (:mod:`marketkeeper.repositories.backups`), or ``None``
    when nothing was ever backed up ("no backups configured")."""
    from marketkeeper.repositories.backups import BackupRepository

    rows = list(BackupRepository(session).newest_per_store().values())
    if not rows:
        return None
    return [
        BackupFigures(
            store=r.store,
            last_succeeded_at=r.last_succeeded_at,
            last_verified_at=r.last_verified_at,
            last_drill_at=r.last_drill_at,
            last_drill_status=None if r.last_drill_status is None else str(r.last_drill_status),
            last_drill_error=r.last_drill_error,
            location=r.location,
            last_attempt_at=r.last_attempt_at,
            last_attempt_status=r.last_attempt_status,
            last_error=r.last_error,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class AlertSync:
    """What :func:`sync_alerts` changed: alerts opened (to notify) and resolved, and the ones still open."""

    opened: list[Breach] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    still_open: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "opened": [b.as_dict() for b in self.opened],
            "resolved": self.resolved,
            "still_open": self.still_open,
        }


def sync_alerts(config: StoreConfig, status: OpsStatus) -> AlertSync:
    """Bring the ``alerts`` table in step with ``status``: one open alert per breach (a breach already open
    is left alone, never repeated), and an open SLO alert whose breach is gone resolved at ``generated_at``."""
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            open_keys = repos.alerts.open_slo_keys()
            current = {b.key: b for b in status.breaches}
            opened = [b for key, b in current.items() if key not in open_keys]
            for breach in opened:
                repos.alerts.open_slo_alert(breach, at=status.generated_at)
            gone = sorted(open_keys - set(current))
            repos.alerts.resolve(gone, at=status.generated_at)
            return AlertSync(opened=opened, resolved=gone, still_open=sorted(open_keys & set(current)))
    finally:
        engine.dispose()


def deliver_alerts(config: StoreConfig, send: Callable[[list[dict[str, Any]]], object]) -> int:
    """Hand every open operator alert not delivered yet to ``send`` (the notifiers), then mark them delivered.

    In one transaction: when ``send`` raises (an SMTP server or webhook down), nothing is marked and the next
    call (the next evaluation or task failure) sends them again, so a failed notification is retried, not lost.

    :param send: called once with the alerts as dicts (``key``, ``slo``, ``subject``, ``severity``, ``message``,
        ``since``), only when there is something to send.
    :returns: how many alerts were delivered.
    """
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            pending = repos.alerts.unsent()
            if not pending:
                return 0
            send(
                [
                    {
                        "key": a.key,
                        "slo": (a.extra_metadata or {}).get("slo", a.alert_type),
                        "subject": a.subject,
                        "severity": str(a.severity),
                        "message": a.message,
                        "since": None if a.since is None else a.since.isoformat(),
                    }
                    for a in pending
                ]
            )
            repos.alerts.mark_sent(pending, at=datetime.now(UTC))
            return len(pending)
    finally:
        engine.dispose()


def acknowledge_alert(config: StoreConfig, alert_id: str, *, by: str | None = None) -> OperatorAlert:
    """Resolve the open operator alert ``alert_id`` (or a unique prefix of at least 6 hex digits) by hand:
    an operator took it on, so it no longer fails ``marketkeeper status``. An SLO breach that persists is
    raised again by the next evaluation.

    :raises NotFoundError: no open operator alert has that id.
    :raises ValidationError: the id is malformed or ambiguous.
    """
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            alert = repos.alerts.open_operator_alert(alert_id)
            repos.alerts.acknowledge(alert, at=datetime.now(UTC), by=by)
            return _alert(alert)
    finally:
        engine.dispose()


def resolve_task_failures(config: StoreConfig, subject: str, *, run_id: str) -> list[str]:
    """Resolve the open ``task_failed`` alerts of the task ``subject`` (``dag.task`` or ``dag.task[i]``),
    which just succeeded in ``run_id``; the keys resolved (to notify)."""
    from sqlalchemy.pool import NullPool

    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    engine = create_ledger_engine(config.ledger_url, poolclass=NullPool)  # one statement per successful task
    try:
        with unit_of_work(engine) as repos:
            rows = repos.alerts.resolve_task_failures(subject, run_id=run_id, at=datetime.now(UTC))
            return [row.key for row in rows if row.key]
    finally:
        engine.dispose()
