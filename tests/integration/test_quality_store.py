"""The quality gate's evidence in the real ledger (PostgreSQL and SQLite): run rows, exact quarantine rows,
idempotent re-runs, and the threshold failing the task only after the evidence is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from marketkeeper.candles import SeriesKey
from marketkeeper.ledger import create_ledger_engine, migrate, session_scope
from marketkeeper.ledger.models import DataQualityRun, QuarantinedCandle
from marketkeeper.quality import (
    PARSEABLE_ROW,
    QualityGateError,
    QualityStoreError,
    check_candles,
    enforce_threshold,
    record_gate,
)
from marketkeeper.quality.escape import unescape_text
from marketkeeper.repositories.quality import QualityRepository
from marketkeeper.sources.base import Reject, rejects_frame

pytestmark = pytest.mark.integration

# An exchange no other test writes, so cleanup can delete by it without touching anyone else's rows.
KEY = SeriesKey.of("mk-test-quality", "BTC/USDT", "1m")
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 1, 0, 20, tzinfo=UTC)
NOW = datetime(2025, 1, 1, tzinfo=UTC)
SOURCE = "files:binance"


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Engine]:
    """A migrated ledger on each backend; this test's rows are deleted afterwards."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_ledger")
    else:
        url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'ledger.sqlite'}"
        migrate.upgrade(url)
    engine = create_ledger_engine(url)
    yield engine
    with session_scope(engine) as session:
        session.execute(sa.delete(QuarantinedCandle).where(QuarantinedCandle.exchange == KEY.exchange))
        session.execute(sa.delete(DataQualityRun).where(DataQualityRun.exchange == KEY.exchange))
    engine.dispose()


def candles(n: int = 20) -> pd.DataFrame:
    base = 100.0 + np.arange(n) * 0.25
    return pd.DataFrame(
        {
            "open_time": pd.date_range(START, periods=n, freq="1min", tz="UTC"),
            "open": base,
            "high": base + 2.0,
            "low": base - 2.0,
            "close": base + 1.0,
            "volume": np.full(n, 5.5),
        }
    )


def bad_candles() -> pd.DataFrame:
    frame = candles()
    frame.loc[2, "close"] = np.nan
    frame.loc[3, "open"] = np.inf
    frame.loc[4, "volume"] = -0.1
    frame.loc[5, "low"] = 0.1 + 0.2  # not exactly 0.3: the stored value must be the same float
    frame.loc[5, "high"] = -1e-7
    return frame


def quarantine(engine: Engine) -> list[QuarantinedCandle]:
    with session_scope(engine) as session:
        return QualityRepository(session).quarantined(KEY.exchange)


def runs(engine: Engine) -> list[DataQualityRun]:
    with session_scope(engine) as session:
        return QualityRepository(session).runs_of(KEY.exchange)


def test_a_run_row_and_a_quarantine_row_per_failed_row_with_exact_values(engine: Engine) -> None:
    result = check_candles(KEY, bad_candles(), now=NOW)
    airflow = {"dag_id": "ohlcv_ingest", "run_id": "scheduled__2024-01-01", "task_id": "ingest"}

    with session_scope(engine) as session:
        record_gate(session, KEY, START, END, result, source=SOURCE, airflow=airflow)

    [run] = runs(engine)
    assert (run.suite, run.exchange, run.symbol, run.timeframe) == ("candles", KEY.exchange, "BTC/USDT", "1m")
    assert (run.range_start, run.range_end) == (START, END)
    assert (run.rows_checked, run.rows_failed, run.success) == (20, 4, False)
    assert (run.dag_id, run.run_id, run.task_id) == ("ohlcv_ingest", "scheduled__2024-01-01", "ingest")
    assert run.results["rows_passed"] == 16
    assert run.results["within_threshold"] is False  # 4 of 20 failed, above the default 1%
    assert run.results["gx"]["success"] is False
    counts = {e["name"]: e["unexpected_count"] for e in run.results["expectations"]}
    assert counts["expect_column_values_to_be_between(volume)"] == 1

    rows = quarantine(engine)
    assert [row.open_time for row in rows] == [pd.Timestamp(START + pd.Timedelta(minutes=m)) for m in (2, 3, 4, 5)]
    assert all(row.data_quality_run_id == run.id and row.source == SOURCE for row in rows)
    nan_row, inf_row, volume_row, pair_row = rows
    assert nan_row.raw_row == {
        "open_time": "2024-01-01T00:02:00+00:00",
        "open": 100.5,
        "high": 102.5,
        "low": 98.5,
        "close": "NaN",
        "volume": 5.5,
    }
    assert nan_row.failed_expectation == "expect_column_values_to_not_be_null(close)"
    assert nan_row.reason == "close is missing"
    assert inf_row.raw_row["open"] == "Infinity"
    assert inf_row.failed_expectation.startswith("expect_column_values_to_be_between(open)")
    assert volume_row.raw_row["volume"] == -0.1
    assert pair_row.raw_row["low"] == 0.1 + 0.2
    assert pair_row.raw_row["high"] == -1e-7
    assert "expect_column_values_to_be_between(high)" in pair_row.failed_expectation
    assert "high -1e-07 is below low 0.30000000000000004" in str(pair_row.reason)


def test_rerunning_the_same_interval_does_not_duplicate_quarantine_rows(engine: Engine) -> None:
    rejects = rejects_frame([Reject(source="files", reason="11 columns, expected 12", raw="1,2,3", line=9)])
    result = check_candles(KEY, bad_candles(), now=NOW, rejects=rejects)

    for _ in range(2):
        with session_scope(engine) as session:
            record_gate(session, KEY, START, END, result, source=SOURCE)

    _first, second = runs(engine)
    rows = quarantine(engine)
    assert len(rows) == 5
    assert {row.data_quality_run_id for row in rows} == {second.id}
    [reject] = [row for row in rows if row.failed_expectation == PARSEABLE_ROW]
    assert reject.raw_row == {"raw": "1,2,3", "line": 9}
    assert reject.open_time is None
    assert reject.reason == "11 columns, expected 12"


def test_a_clean_rerun_clears_the_interval_and_leaves_other_sources_alone(engine: Engine) -> None:
    with session_scope(engine) as session:
        record_gate(session, KEY, START, END, check_candles(KEY, bad_candles(), now=NOW), source="ccxt:binance")
        record_gate(session, KEY, START, END, check_candles(KEY, bad_candles(), now=NOW), source=SOURCE)

    with session_scope(engine) as session:
        run = record_gate(session, KEY, START, END, check_candles(KEY, candles(), now=NOW), source=SOURCE)

    assert run.success
    assert {row.source for row in quarantine(engine)} == {"ccxt:binance"}
    assert len(runs(engine)) == 3


def test_a_row_breaking_many_expectations_fits_the_column_and_keeps_every_reason(engine: Engine) -> None:
    frame = candles()
    frame.loc[7, ["open", "high", "low", "close", "volume"]] = np.nan
    result = check_candles(KEY, frame, now=NOW)
    listed = str(result.failed["failed_expectation"].iloc[0])
    assert len(listed) > 200

    with session_scope(engine) as session:
        record_gate(session, KEY, START, END, result, source=SOURCE)

    [row] = quarantine(engine)
    assert len(row.failed_expectation) <= 200
    assert row.failed_expectation.startswith("expect_column_values_to_not_be_null(open); ")
    assert row.failed_expectation.endswith(" more")
    assert str(row.reason).count("is missing") == 5
    assert row.raw_row["volume"] == "NaN"


def test_the_threshold_error_comes_after_the_evidence_is_stored(engine: Engine) -> None:
    result = check_candles(KEY, bad_candles(), now=NOW, max_failed_fraction=0.05)

    with pytest.raises(QualityGateError, match=r"mk-test-quality:BTC/USDT:1m over \[2024-01-01T00:00:00"):
        with session_scope(engine) as session:
            record_gate(session, KEY, START, END, result, source=SOURCE)
        enforce_threshold(result, KEY, START, END)

    assert len(runs(engine)) == 1
    assert len(quarantine(engine)) == 4


def test_a_source_label_too_long_for_the_column_is_refused(engine: Engine) -> None:
    result = check_candles(KEY, bad_candles(), now=NOW)

    with pytest.raises(QualityStoreError, match="source label"), session_scope(engine) as session:
        record_gate(session, KEY, START, END, result, source="files:" + "x" * 600)

    assert runs(engine) == []


def hostile_rejects() -> pd.DataFrame:
    return rejects_frame(
        [
            Reject(source="files", reason="open 'a\x00b' is not a number", raw="1704067200000,a\x00b,2", line=1),
            Reject(source="files", reason="open '\ud800' is not a number", raw="1704067260000,\ud800,2", line=2),
            Reject(source="files", reason="expected 12 columns, got 20000", raw="9," * 50_000, line=3),
            Reject(source="files", reason="bad", raw="x", file="klines-\udcff.csv", line=4),
        ]
    )


def test_hostile_source_rows_land_in_quarantine_escaped_and_capped(engine: Engine) -> None:
    result = check_candles(KEY, candles(), now=NOW, rejects=hostile_rejects())

    with session_scope(engine) as session:
        run = record_gate(session, KEY, START, END, result, source=SOURCE)
        run_id = run.id

    rows = sorted(quarantine(engine), key=lambda row: row.raw_row["line"])
    assert len(rows) == 4
    assert all(row.data_quality_run_id == run_id and row.failed_expectation == PARSEABLE_ROW for row in rows)
    nul, surrogate, long, bad_file = rows
    assert nul.raw_row == {"raw": "1704067200000,a\\x00b,2", "line": 1, "escaped": True}
    assert unescape_text(nul.raw_row["raw"]) == "1704067200000,a\x00b,2"
    assert nul.reason == "open 'a\\x00b' is not a number"
    assert surrogate.raw_row["raw"] == "1704067260000,\\ud800,2"
    assert unescape_text(surrogate.raw_row["raw"]) == "1704067260000,\ud800,2"
    assert surrogate.reason == "open '\\ud800' is not a number"
    assert long.raw_row == {"raw": ("9," * 512), "raw_length": 100_000, "truncated": True, "line": 3}
    assert long.reason == "expected 12 columns, got 20000"
    assert bad_file.raw_row == {"raw": "x", "file": "klines-\\udcff.csv", "line": 4, "escaped": True}


def test_a_huge_reason_is_capped_with_its_length(engine: Engine) -> None:
    reason = "open '" + "7" * 200_000 + "' is not a number"
    rejects = rejects_frame([Reject(source="files", reason=reason, raw="row", line=1)])

    with session_scope(engine) as session:
        record_gate(session, KEY, START, END, check_candles(KEY, candles(), now=NOW, rejects=rejects), source=SOURCE)

    [row] = quarantine(engine)
    assert str(row.reason).startswith("open '7777")
    assert str(row.reason).endswith(f"… ({len(reason)} characters in all)")
    assert len(str(row.reason)) < 4200


def test_bad_optional_values_are_quarantined_row_by_row(engine: Engine) -> None:
    frame = candles().assign(quote_volume=50.0, trade_count=pd.Series(range(20), dtype=object))
    frame.loc[2, "quote_volume"] = np.inf
    frame.loc[3, "trade_count"] = 1.5
    frame.loc[4, "trade_count"] = 1e30
    frame.loc[5, "trade_count"] = -1

    with session_scope(engine) as session:
        record_gate(session, KEY, START, END, check_candles(KEY, frame, now=NOW), source=SOURCE)

    rows = quarantine(engine)
    assert [row.raw_row.get("quote_volume") for row in rows] == ["Infinity", 50.0, 50.0, 50.0]
    # JSONB keeps numbers as numerics: 1e30 reads back as the int 10**30 on PostgreSQL.
    assert [float(row.raw_row["trade_count"]) for row in rows] == [2, 1.5, 1e30, -1]
    assert rows[0].failed_expectation == "expect_column_values_to_be_between(quote_volume)"
    assert rows[1].reason == "trade_count 1.5 is not a whole number"
    assert rows[2].reason == "trade_count 1e+30 is not a non-negative count below 2**63"


def test_a_hostile_source_label_is_stored_escaped_and_replaced_on_rerun(engine: Engine) -> None:
    label = "files:/data/klines-\udcff\x00"
    for _ in range(2):
        with session_scope(engine) as session:
            record_gate(session, KEY, START, END, check_candles(KEY, bad_candles(), now=NOW), source=label)

    rows = quarantine(engine)
    assert len(rows) == 4
    assert {row.source for row in rows} == {"files:/data/klines-\\udcff\\x00"}
    assert {run.results["source"] for run in runs(engine)} == {"files:/data/klines-\\udcff\\x00"}
