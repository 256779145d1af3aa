"""``marketkeeper status``: the ops figures and SLO breaches (the same document the UI page and ``/metrics`` show)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from marketkeeper.cli.common import fail, store_config, user_errors

if TYPE_CHECKING:
    from marketkeeper.ops.figures import OpsStatus


def _when(at: datetime | None) -> str:
    return "-" if at is None else f"{at:%Y-%m-%d %H:%M}"


def _table(status: OpsStatus) -> list[str]:
    lines = [f"ops status at {status.generated_at:%Y-%m-%d %H:%M:%S} UTC", "", "series"]
    header = ("series", "status", "last candle", "lag", "gaps", "missing", "fail 24h", "quar 24h", "last run")
    rows = [header]
    for s in status.series:
        share = s.quality_failure_share
        run = (
            "-"
            if s.last_run_at is None
            else f"{_when(s.last_run_at)} {s.last_run_by} {'ok' if s.last_run_ok else 'FAILED'}"
        )
        rows.append(
            (
                s.label,
                s.status.upper() if s.status != "ok" else "ok",
                _when(s.last_candle),
                "-" if s.lag_candles is None else str(s.lag_candles),
                str(s.open_gaps),
                str(s.missing_candles),
                "-" if share is None else f"{share:.2%}",
                str(s.quarantined_24h),
                s.error or run,
            )
        )
    if len(rows) == 1:
        lines.append("  (no active market declared)")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
    lines += ["", "stores"]
    for st in status.stores:
        if not st.configured:
            lines.append(f"  {st.store:<9} -     {st.error}")
        elif st.ok:
            lines.append(f"  {st.store:<9} ok    {st.latency_ms or 0:7.1f} ms  {st.version}  {st.target}")
        else:
            lines.append(f"  {st.store:<9} DOWN  {st.target}: {st.error}")
    lines += ["", "backups"]
    if not status.backups:
        lines.append("  no backups configured")
    for b in status.backups or []:
        drill = f"drill {_when(b.last_drill_at)} {b.last_drill_status or '-'}"
        attempt = f"last attempt {_when(b.last_attempt_at)} {b.last_attempt_status or '-'}"
        lines.append(
            f"  {b.store:<9} succeeded {_when(b.last_succeeded_at)}  verified {_when(b.last_verified_at)}  {drill}"
            f"  {attempt}" + (f": {b.last_error}" if b.last_error else "")
        )
    lines += ["", f"breaches: {len(status.breaches)}"]
    lines += [f"  [{b.severity}] {b.slo}: {b.message}" for b in status.breaches]
    lines += ["", f"open alerts: {len(status.alerts)}"]
    lines += [f"  {a.short_id}  [{a.severity}] {a.kind} since {_when(a.since)}: {a.message}" for a in status.alerts]
    if status.failed_tasks:
        lines.append("  (a failed task's alert resolves when the task next succeeds, or: marketkeeper status --ack ID)")
    return lines


def _problems(status: OpsStatus) -> str:
    """What makes ``status`` fail, in one line: the SLO breaches and the failed tasks still open."""
    parts = []
    if status.breaches:
        parts.append(
            f"{len(status.breaches)} SLO breach(es): " + "; ".join(f"{b.slo} {b.subject}" for b in status.breaches)
        )
    if status.failed_tasks:
        parts.append(
            f"{len(status.failed_tasks)} failed task(s) open: "
            + "; ".join(f"{a.subject} ({a.short_id})" for a in status.failed_tasks)
        )
    return "; ".join(parts)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document, not a table.")] = False,
    ack: Annotated[
        str | None,
        typer.Option("--ack", metavar="ID", help="Acknowledge (resolve) the open alert ID (its first 8 digits do)."),
    ] = None,
) -> None:
    """Freshness, gaps and quality of every active series, the stores, the backups, the SLO breaches and the
    open operator alerts (SLO breaches and failed tasks).

    Exits 1 when any SLO is breached or a failed task's alert is open, naming each (for cron or a CI check);
    such an alert resolves when the task next succeeds, or with --ack ID. SLOs: MARKETKEEPER_SLO_*.
    """
    from marketkeeper.services.status import acknowledge_alert, ops_status

    config = store_config()
    if ack is not None:
        with user_errors():
            done = acknowledge_alert(config, ack, by=getpass.getuser())
        typer.echo(f"acknowledged {done.short_id} ({done.kind} {done.subject}): {done.title}")
        return
    with user_errors():
        report = ops_status(config)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo("\n".join(_table(report)))
    if not report.ok:
        fail(_problems(report))


def register(app: typer.Typer) -> None:
    """Add ``status`` to ``app``."""
    app.command("status")(status)
