"""The SLO evaluation and the Prometheus exposition over figures alone (no server): what breaches, when it
began, and what a scrape reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from marketkeeper.health import StoreHealth
from marketkeeper.ops.figures import BackupFigures, OpsStatus, SeriesFigures
from marketkeeper.ops.metrics import render_metrics
from marketkeeper.ops.page import filter_series, render_page
from marketkeeper.ops.slo import Slos, breaches

NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
LEDGER = StoreHealth("ledger", True, True, "sqlite:///x", "sqlite 3", 0.5)


def series(**kw: object) -> SeriesFigures:
    values: dict[str, object] = {"exchange": "ex", "symbol": "BTC/USDT", "timeframe": "1m", **kw}
    return SeriesFigures(**values)  # type: ignore[arg-type]


def test_each_slo_breaches_only_beyond_its_threshold() -> None:
    slos = Slos()
    within = series(last_candle=NOW - timedelta(minutes=3), lag_candles=2, rows_checked_24h=100, rows_failed_24h=1)
    assert breaches(slos, NOW, [within], [LEDGER], []) == []

    lagging = series(last_candle=NOW, lag_candles=3, stale_since=NOW)
    old_gap = series(symbol="ETH/USDT", last_candle=NOW, lag_candles=0, open_gaps=2, missing_candles=7,
                     oldest_gap_seen=NOW - timedelta(hours=25))  # fmt: skip
    failing = series(symbol="SOL/USDT", last_candle=NOW, lag_candles=0, rows_checked_24h=100, rows_failed_24h=2)
    empty = series(symbol="XRP/USDT")
    down = StoreHealth("redis", True, False, "redis://h:6379/0", error="Connection refused")
    unverified = BackupFigures("ledger", last_succeeded_at=NOW)
    stale_backup = BackupFigures("redis", last_verified_at=NOW - timedelta(days=9))
    found = breaches(slos, NOW, [lagging, old_gap, failing, empty], [LEDGER, down], [unverified, stale_backup])
    assert [(b.slo, b.subject, b.severity) for b in found] == [
        ("freshness", "ex:BTC/USDT:1m", "high"),
        ("gap_age", "ex:ETH/USDT:1m", "medium"),
        ("quality", "ex:SOL/USDT:1m", "medium"),
        ("freshness", "ex:XRP/USDT:1m", "high"),
        ("store_up", "redis", "critical"),
        ("backup_age", "ledger", "high"),
        ("backup_age", "redis", "high"),
    ]
    assert found[1].since == NOW - timedelta(hours=1) and "7 missing candles" in found[1].message
    assert found[6].since == NOW - timedelta(days=1)
    assert len({b.key for b in found}) == len(found)


def test_a_store_not_configured_is_no_breach() -> None:
    off = StoreHealth("influxdb", False, True, error="INFLUXDB_URL not set")
    assert breaches(Slos(), NOW, [], [LEDGER, off], []) == []


def test_metrics_parse_as_prometheus_text_with_the_figures() -> None:
    status = OpsStatus(
        generated_at=NOW,
        series=[series(last_candle=NOW - timedelta(minutes=5), lag_candles=4, open_gaps=1, missing_candles=9)],
        stores=[LEDGER, StoreHealth("redis", True, False, "redis://h", error="down")],
        backups=[BackupFigures("ledger", last_succeeded_at=NOW - timedelta(hours=1))],
        breaches=[],
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render_metrics(status).decode())
        for s in family.samples
    }
    labels = (("exchange", "ex"), ("symbol", "BTC/USDT"), ("timeframe", "1m"))
    assert samples[("marketkeeper_series_freshness_lag_candles", labels)] == 4
    assert samples[("marketkeeper_series_last_candle_age_seconds", labels)] == 300
    assert samples[("marketkeeper_series_missing_candles", labels)] == 9
    assert samples[("marketkeeper_store_up", (("store", "redis"),))] == 0
    assert samples[("marketkeeper_store_latency_seconds", (("store", "ledger"),))] == 0.0005
    assert samples[("marketkeeper_backup_age_seconds", (("kind", "succeeded"), ("store", "ledger")))] == 3600


def test_page_escapes_names_and_filters() -> None:
    hostile = series(symbol="<script>x</script>/USDT", status="stale")
    other = series(exchange="kraken", status="ok")
    status = OpsStatus(generated_at=NOW, series=[hostile, other], stores=[LEDGER], backups=None, breaches=[])
    page = render_page(status, {"status": "stale"})
    assert "<script>x" not in page and "&lt;script&gt;x" in page
    assert "kraken:BTC/USDT" not in page.split('<table id="series">')[1].split("</table>")[0]
    assert "no backups configured" in page
    assert filter_series([hostile, other], {"exchange": "kraken"}) == [other]
