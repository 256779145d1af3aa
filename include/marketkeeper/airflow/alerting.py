"""Operator alerts from Airflow: the ``ops_monitor`` task (SLO breaches -> ``alerts`` rows), the task-failure
and task-success callbacks every marketkeeper DAG shares (a failed task opens an alert; the same task
succeeding in a later run resolves it), and the notifications they send.

Notifications are Airflow notifiers configured by connection and off until the connection exists:

* ``marketkeeper_alerts_smtp`` (type ``smtp``; host, port, login/password as the SMTP provider reads them; extras
  ``to`` — comma-separated recipients, required — and ``from_email``): one e-mail per evaluation that opened
  or resolved alerts, through :class:`~airflow.providers.smtp.notifications.smtp.SmtpNotifier`;
* ``marketkeeper_alerts_webhook`` (any type; ``host`` is the full URL, or host/port/schema/``extra.path``):
  one JSON ``POST`` per evaluation that opened or resolved alerts, through :class:`WebhookNotifier`.

An alert is written before anything is sent and marked delivered only once every notifier took it: a notifier
that fails fails the task, and the next evaluation (or task failure) sends the alert again. A resolution is
sent once, best effort (the alert is resolved already).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from airflow.sdk import BaseNotifier

from marketkeeper.airflow.dag_glue import fail_fast
from marketkeeper.airflow.stores import NOT_CONFIGURED, get_optional_connection

if TYPE_CHECKING:
    from marketkeeper.store_set import StoreConfig

__all__ = [
    "SMTP_CONN_ID",
    "WEBHOOK_CONN_ID",
    "WebhookNotifier",
    "evaluate_and_alert",
    "record_task_failure",
    "record_task_success",
]

log = logging.getLogger(__name__)

SMTP_CONN_ID: Final = "marketkeeper_alerts_smtp"
WEBHOOK_CONN_ID: Final = "marketkeeper_alerts_webhook"


class WebhookNotifier(BaseNotifier):
    """POST ``payload`` as JSON to ``url`` (a generic webhook: Slack-compatible receivers, Alertmanager bridges,
    a team's own endpoint). Fails on a non-2xx answer so the task shows the notification did not arrive.

    :param url: the receiver; credentials in it are never logged.
    :param payload: the JSON body (its string values are templated like any notifier's fields).
    """

    template_fields = ("payload",)

    def __init__(self, *, url: str, payload: dict[str, Any], timeout: float = 10.0) -> None:
        super().__init__()
        self.url = url
        self.payload = payload
        self.timeout = timeout

    def notify(self, context: Any) -> None:
        import requests

        from marketkeeper.settings import redact_url

        try:
            answer = requests.post(self.url, json=self.payload, timeout=self.timeout)
            answer.raise_for_status()
        except requests.RequestException as exc:
            raise RuntimeError(f"webhook {redact_url(self.url)} failed: {type(exc).__name__}") from None


def _webhook_url() -> str | None:
    conn = get_optional_connection(WEBHOOK_CONN_ID)
    if conn is NOT_CONFIGURED:
        return None
    host = (conn.host or "").strip()
    if "://" in host:
        return host
    scheme = conn.schema or "http"
    port = f":{conn.port}" if conn.port else ""
    path = str(conn.extra_dejson.get("path", "/")).lstrip("/")
    return f"{scheme}://{host}{port}/{path}"


def _email_settings() -> tuple[list[str], str | None] | None:
    conn = get_optional_connection(SMTP_CONN_ID)
    if conn is NOT_CONFIGURED:
        return None
    extra = conn.extra_dejson
    to = [a.strip() for a in str(extra.get("to", "")).split(",") if a.strip()]
    if not to:
        from marketkeeper.errors import ConfigurationError

        raise ConfigurationError(f"Airflow connection {SMTP_CONN_ID!r} needs extra 'to' (comma-separated recipients)")
    return to, extra.get("from_email") or None


def notify(
    opened: Sequence[Mapping[str, Any]], resolved: Sequence[str], *, context: Mapping[str, Any], source: str
) -> list[str]:
    """Send the new and the resolved alerts through every configured notifier.

    :param opened: new alerts as dicts (``slo``, ``subject``, ``severity``, ``message``, ``since``, ``key``).
    :param resolved: keys of the alerts that just ended.
    :returns: the notifiers that sent something (``email``, ``webhook``).
    """
    sent: list[str] = []
    if not opened and not resolved:
        return sent
    email = _email_settings()
    if email is not None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        to, from_email = email
        subject, body = _email(opened, resolved)
        SmtpNotifier(
            to=to,
            from_email=from_email,
            subject=subject,
            html_content=f"<p>{html.escape(source)}</p>{body}",
            smtp_conn_id=SMTP_CONN_ID,
        ).notify(dict(context))  # type: ignore[arg-type]
        sent.append("email")
    url = _webhook_url()
    if url is not None:
        payload = {"source": source, "opened": [dict(a) for a in opened], "resolved": list(resolved)}
        WebhookNotifier(url=url, payload=payload).notify(dict(context))
        sent.append("webhook")
    return sent


def _email(opened: Sequence[Mapping[str, Any]], resolved: Sequence[str]) -> tuple[str, str]:
    """The subject and HTML body of one e-mail: the new alerts (the worst in the subject), then the resolved."""
    body = ""
    if opened:
        worst = max(opened, key=lambda a: _SEVERITY_ORDER.get(str(a["severity"]), 0))
        subject = f"[marketkeeper] {len(opened)} new alert(s): {worst['slo']} {worst['subject']}"
        if resolved:
            subject += f"; {len(resolved)} resolved"
        items = "".join(
            f"<li><b>[{html.escape(str(a['severity']))}] {html.escape(str(a['slo']))}</b>: "
            f"{html.escape(str(a['message']))} (since {html.escape(str(a.get('since') or '-'))})</li>"
            for a in opened
        )
        body += f"<ul>{items}</ul>"
    else:
        subject = f"[marketkeeper] {len(resolved)} alert(s) resolved: {', '.join(resolved)}"[:250]
    if resolved:
        items = "".join(f"<li>{html.escape(key)}</li>" for key in resolved)
        body += f"<p>Resolved:</p><ul>{items}</ul>"
    return subject, body


_SEVERITY_ORDER: Final = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def _configured() -> bool:
    return any(get_optional_connection(c) is not NOT_CONFIGURED for c in (SMTP_CONN_ID, WEBHOOK_CONN_ID))


def _deliver(config: StoreConfig, resolved: Sequence[str], *, context: Mapping[str, Any], source: str) -> list[str]:
    """Send every open alert not delivered yet (the new ones, and any a failed notifier left) and ``resolved``;
    they are marked delivered only once every notifier took them (:func:`deliver_alerts`)."""
    from marketkeeper.services.status import deliver_alerts

    if not _configured():
        return []  # nothing is marked: alerts still open are sent once a notifier is configured
    sent: list[str] = []
    with fail_fast():
        delivered = deliver_alerts(
            config, lambda alerts: sent.extend(notify(alerts, resolved, context=context, source=source))
        )
        if not delivered and resolved:
            sent.extend(notify([], resolved, context=context, source=source))
    return sent


def evaluate_and_alert(context: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ops_monitor`` task: measure (:func:`~marketkeeper.services.status.ops_status`), bring the
    ``alerts`` table in step (:func:`~marketkeeper.services.status.sync_alerts`) and notify what changed."""
    from marketkeeper.airflow.ingestion import declared_override
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.status import ops_status, sync_alerts

    with fail_fast():
        config = store_config()
        status = ops_status(config, markets_override=declared_override())
    changes = sync_alerts(config, status)
    for breach in changes.opened:
        log.warning("new alert [%s] %s", breach.severity, breach.message)
    for key in changes.resolved:
        log.info("resolved %s", key)
    sent = _deliver(config, changes.resolved, context=context, source="ops_monitor: SLO breaches")
    return {**changes.as_dict(), "notified": sent, "breaches": len(status.breaches)}


def record_task_failure(context: Mapping[str, Any]) -> None:
    """The task-level ``on_failure_callback`` of every marketkeeper DAG: one open ``task_failed`` alert per
    failed task instance (dag, task, map index, run), then the notifiers."""
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.errors import first_line
    from marketkeeper.ledger import create_ledger_engine
    from marketkeeper.repositories import unit_of_work

    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    subject = _task_subject(ti)
    exception = context.get("exception")
    cause = first_line(exception) if isinstance(exception, BaseException) else str(exception or "unknown cause")
    details = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": map_index}
    config = store_config()
    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            repos.alerts.open_task_failure(
                key=f"task:{subject}:{ti.run_id}",
                subject=subject,
                title=f"task failed: {subject}",
                message=f"{subject} failed in run {ti.run_id}: {cause}",
                details=details,
                at=datetime.now(UTC),
            )
    finally:
        engine.dispose()
    _deliver(config, [], context=context, source=f"task failure in {ti.dag_id}")


def _task_subject(ti: Any) -> str:
    """``dag.task`` or, for a mapped task instance, ``dag.task[i]``: what a task's alerts are about."""
    map_index = getattr(ti, "map_index", -1)
    task = ti.task_id if map_index in (None, -1) else f"{ti.task_id}[{map_index}]"
    return f"{ti.dag_id}.{task}"


def record_task_success(context: Mapping[str, Any]) -> None:
    """The task-level ``on_success_callback`` of every marketkeeper DAG: the task succeeded, so the open
    ``task_failed`` alerts of that task (any earlier run) are resolved, and the notifiers told."""
    from marketkeeper.airflow.stores import store_config
    from marketkeeper.services.status import resolve_task_failures

    ti = context["ti"]
    subject = _task_subject(ti)
    config = store_config()
    resolved = resolve_task_failures(config, subject, run_id=ti.run_id)
    if resolved:
        log.info("resolved %s", ", ".join(resolved))
        _deliver(config, resolved, context=context, source=f"task {subject} succeeded in run {ti.run_id}")
