"""The ops page of the Airflow UI: one server-rendered HTML document over an
:class:`~marketkeeper.ops.figures.OpsStatus` (Jinja2, autoescaped), filterable by exchange, timeframe and
status, each series linked to the runs of the DAG that keeps it."""

from __future__ import annotations

from collections.abc import Mapping

import jinja2

from marketkeeper.ops.figures import OpsStatus, SeriesFigures

__all__ = ["STATUSES", "filter_series", "render_page"]

#: The statuses a series can have, for the filter.
STATUSES = ("ok", "gaps", "stale", "error")

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_TEMPLATE = _ENV.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>marketkeeper ops</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.2rem; color: #1b1f24; }
 table { border-collapse: collapse; margin-bottom: 1.5rem; }
 th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; font-size: .9rem; }
 th { background: #f6f8fa; }
 tr.ok td.status { background: #dafbe1; } tr.gaps td.status { background: #fff8c5; }
 tr.stale td.status, tr.error td.status, tr.down td.status { background: #ffebe9; }
 .breach { color: #a40e26; } form { margin: .6rem 0 1rem; }
</style></head><body>
<h1>marketkeeper ops</h1>
<p>Measured {{ generated }} UTC &middot; {{ breaches|length }} SLO breach(es) &middot;
 {{ failed_tasks|length }} failed task(s) open &middot;
 <a href="status">JSON</a> &middot; <a href="metrics">metrics</a></p>
{% if breaches %}<ul id="breaches">{% for b in breaches %}
 <li class="breach">[{{ b.severity }}] {{ b.slo }}: {{ b.message }}</li>{% endfor %}</ul>{% endif %}
<h2>Open alerts</h2>
{% if alerts %}<table id="alerts"><thead><tr><th>id</th><th>kind</th><th>severity</th><th>subject</th>
 <th>since</th><th>message</th></tr></thead><tbody>{% for a in alerts %}
<tr class="{{ a.kind }}" data-alert="{{ a.id }}"><td>{{ a.short_id }}</td><td>{{ a.kind }}</td>
 <td>{{ a.severity }}</td><td>{{ a.subject or "-" }}</td><td>{{ when(a.since) }}</td><td>{{ a.message }}</td></tr>
{% endfor %}</tbody></table>
<p>A failed task's alert resolves when that task next succeeds, or with <code>marketkeeper status --ack ID</code>.</p>
{% else %}<p id="alerts">no open alerts</p>{% endif %}
<h2>Series</h2>
<form method="get">
 <label>exchange <select name="exchange"><option value="">all</option>{% for e in exchanges %}
  <option{% if e == chosen.exchange %} selected{% endif %}>{{ e }}</option>{% endfor %}</select></label>
 <label>timeframe <select name="timeframe"><option value="">all</option>{% for t in timeframes %}
  <option{% if t == chosen.timeframe %} selected{% endif %}>{{ t }}</option>{% endfor %}</select></label>
 <label>status <select name="status"><option value="">all</option>{% for s in statuses %}
  <option{% if s == chosen.status %} selected{% endif %}>{{ s }}</option>{% endfor %}</select></label>
 <button type="submit">filter</button>
</form>
<table id="series"><thead><tr><th>series</th><th>status</th><th>last candle</th><th>lag (candles)</th>
 <th>open gaps</th><th>missing candles</th><th>quality failures 24 h</th><th>quarantined 24 h</th>
 <th>last run</th></tr></thead>
<tbody>{% for s in series %}
<tr class="{{ s.status }}" data-series="{{ s.label }}">
 <td><a href="{{ runs_url(s) }}" target="_top">{{ s.label }}</a></td>
 <td class="status">{{ s.status }}</td>
 <td>{{ when(s.last_candle) }}</td>
 <td class="lag">{{ "-" if s.lag_candles is none else s.lag_candles }}</td>
 <td class="gaps">{{ s.open_gaps }}</td><td class="missing">{{ s.missing_candles }}</td>
 <td>{{ "-" if s.quality_failure_share is none else "%.2f%%"|format(100 * s.quality_failure_share) }}</td>
 <td>{{ s.quarantined_24h }}</td>
 <td>{% if s.error %}{{ s.error }}{% elif s.last_run_at %}{{ when(s.last_run_at) }} {{ s.last_run_by }}
  {{ "ok" if s.last_run_ok else "failed" }}{% else %}-{% endif %}</td>
</tr>{% else %}<tr><td colspan="9">no series match</td></tr>{% endfor %}</tbody></table>
<h2>Stores</h2>
<table id="stores"><thead><tr><th>store</th><th>status</th><th>latency</th><th>version</th><th>target</th></tr></thead>
<tbody>{% for st in stores %}
<tr class="{{ 'ok' if st.ok and st.configured else ('down' if st.configured else 'off') }}">
 <td>{{ st.store }}</td><td class="status">{{ ('up' if st.ok else 'DOWN') if st.configured else 'not configured' }}</td>
 <td>{{ "-" if st.latency_ms is none else "%.1f ms"|format(st.latency_ms) }}</td>
 <td>{{ st.version or "-" }}</td>
 <td>{{ st.target or st.error or "" }}{% if st.configured and not st.ok %}: {{ st.error }}{% endif %}</td>
</tr>{% endfor %}</tbody></table>
<h2>Backups</h2>
{% if backups %}<table id="backups"><thead><tr><th>store</th><th>newest succeeded</th><th>newest verified</th>
 <th>last drill</th><th>last attempt</th><th>location</th></tr></thead><tbody>{% for b in backups %}
<tr><td>{{ b.store }}</td><td>{{ when(b.last_succeeded_at) }}</td><td>{{ when(b.last_verified_at) }}</td>
 <td>{{ when(b.last_drill_at) }} {{ b.last_drill_status or "" }} {{ b.last_drill_error or "" }}</td>
 <td>{{ when(b.last_attempt_at) }} {{ b.last_attempt_status or "" }} {{ b.last_error or "" }}</td>
 <td>{{ b.location or "-" }}</td></tr>{% endfor %}</tbody></table>
{% else %}<p id="backups">no backups configured</p>{% endif %}
</body></html>
"""
)


def filter_series(series: list[SeriesFigures], chosen: Mapping[str, str]) -> list[SeriesFigures]:
    """The series matching every non-empty filter of ``chosen`` (``exchange``, ``timeframe``, ``status``)."""
    return [
        s
        for s in series
        if all(not chosen.get(name) or getattr(s, name) == chosen[name] for name in ("exchange", "timeframe", "status"))
    ]


def _runs_url(series: SeriesFigures) -> str:
    # The runs of the DAG that last wrote the series (ingestion by default), in the Airflow UI.
    dag_id = series.last_run_by if series.last_run_by not in (None, "cli") else "ohlcv_ingest"
    return f"/dags/{dag_id}/runs"


def render_page(status: OpsStatus, chosen: Mapping[str, str]) -> str:
    """The HTML page of ``status`` with the series filtered by ``chosen``."""
    return _TEMPLATE.render(
        generated=f"{status.generated_at:%Y-%m-%d %H:%M:%S}",
        breaches=status.breaches,
        alerts=status.alerts,
        failed_tasks=status.failed_tasks,
        series=filter_series(status.series, chosen),
        exchanges=sorted({s.exchange for s in status.series}),
        timeframes=sorted({s.timeframe for s in status.series}),
        statuses=STATUSES,
        chosen={name: chosen.get(name, "") for name in ("exchange", "timeframe", "status")},
        stores=status.stores,
        backups=status.backups,
        runs_url=_runs_url,
        when=lambda at: "-" if at is None else f"{at:%Y-%m-%d %H:%M}",
    )
