"""The quality gate's evidence in the ledger: a ``data_quality_runs`` row per run, a ``quarantined_candles``
row per failed row, written idempotently over a series' interval through
:class:`~marketkeeper.repositories.quality.QualityRepository`.

Re-running the gate over the same series, range and source replaces the quarantine rows an earlier run
left there (same transaction, delete then insert), so retries and backfills never pile up duplicates; the
``data_quality_runs`` rows stay, as the history of every validation.

Whatever a source sent can be stored: text PostgreSQL refuses (NUL, lone surrogates) is escaped as
:mod:`marketkeeper.quality.escape` describes, a rejected row's text is kept to its first
:data:`RAW_LIMIT` characters (``raw_length`` and ``truncated`` say so) and a reason to :data:`REASON_LIMIT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from marketkeeper.candles import CANDLE_COLUMNS, OPEN_TIME, SeriesKey
from marketkeeper.errors import MarketkeeperError
from marketkeeper.ledger.models import DataQualityRun, QuarantinedCandle
from marketkeeper.quality.escape import storable_json, storable_text, truncated_text
from marketkeeper.quality.gate import GateResult
from marketkeeper.quality.jsonable import jsonable
from marketkeeper.quality.split import FAILED_EXPECTATION, FILE, LINE, RAW, REASON
from marketkeeper.quality.suite import SUITE_NAME
from marketkeeper.repositories.quality import QualityRepository
from marketkeeper.timeframes import check_range

__all__ = ["RAW_LIMIT", "REASON_LIMIT", "QualityStoreError", "raw_row", "record_gate"]

#: Characters of a rejected row's text kept in ``raw_row``; its full length is noted beside it.
RAW_LIMIT: Final = 1024
#: Characters of a reason kept (a gate reason lists one sentence per broken expectation, well below this).
REASON_LIMIT: Final = 4096
_AIRFLOW_KEYS: Final = ("dag_id", "run_id", "task_id")
_SEPARATOR: Final = "; "


# Column widths of the ledger models; checked here so SQLite (which ignores them) behaves like PostgreSQL.
def _width(column: sa.ColumnElement[Any]) -> int:
    kind = column.type
    if not isinstance(kind, sa.String) or kind.length is None:
        raise TypeError(f"{column} is not a bounded string column; the quality store needs its width")
    return kind.length


_SOURCE_WIDTH: Final = _width(QuarantinedCandle.__table__.c.source)
_EXPECTATION_WIDTH: Final = _width(QuarantinedCandle.__table__.c.failed_expectation)


class QualityStoreError(MarketkeeperError, ValueError):
    """The gate's evidence cannot be recorded as given (a source label too long, unknown Airflow ids)."""


def record_gate(
    session: Session,
    key: SeriesKey,
    start: datetime,
    end: datetime,
    result: GateResult,
    *,
    source: str,
    suite: str = SUITE_NAME,
    airflow: Mapping[str, str] | None = None,
) -> DataQualityRun:
    """Write one ``data_quality_runs`` row and one ``quarantined_candles`` row per failed row of ``result``.

    Quarantine rows the same series and source already had in ``[start, end)``, or that an earlier run of
    ``suite`` over exactly this range filed (that is how rows without an open time, such as unparseable
    lines, are found again), are deleted first, so a re-run leaves one copy of each. The caller's session
    commits; nothing here commits.

    :param session: a ledger session inside a transaction (e.g. from ``session_scope``).
    :param key: the series checked.
    :param start: the range checked, inclusive; timezone-aware.
    :param end: the range checked, exclusive; timezone-aware.
    :param result: what :func:`~marketkeeper.quality.gate.check_candles` found.
    :param source: the source label (``CandleSource.name``), stored on every quarantine row.
    :param suite: the suite name stored on the run.
    :param airflow: ``dag_id``, ``run_id`` and ``task_id`` of the task that ran the gate, if any.
    :raises QualityStoreError: ``source`` is too long for the column, or ``airflow`` has unknown keys.
    :raises ValidationError: a value does not fit its ledger column (an Airflow id too long).
    """
    start, end = check_range(start, end)
    label = storable_text(source)
    if not label or len(label) > _SOURCE_WIDTH:
        raise QualityStoreError(f"source label must have 1 to {_SOURCE_WIDTH} characters, got {source!r}")
    repository = QualityRepository(session)
    run = repository.add_run(
        suite=suite,
        exchange=key.exchange,
        symbol=key.symbol,
        timeframe=str(key.timeframe),
        range_start=start,
        range_end=end,
        rows_checked=result.rows_checked,
        rows_failed=result.rows_failed,
        success=result.success,
        results=_run_results(result, label),
        **_airflow_ids(airflow),
    )
    repository.replace_window_quarantine(
        run, source=label, rows=[_quarantine_row(record) for record in _records(result.failed)]
    )
    return run


def raw_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A failed row as JSON: values exactly as received, non-finite numbers as ``"NaN"``/``"Infinity"``.

    A rejected source row keeps its verbatim text (``raw``), ``file`` and ``line`` instead of candle values.
    Text longer than :data:`RAW_LIMIT` is cut there, with ``"raw_length"`` (the full length in characters)
    and ``"truncated": true``; text PostgreSQL refuses is escaped, with ``"escaped": true``
    (:func:`~marketkeeper.quality.escape.unescape_text` undoes it).

    :param record: one row of :attr:`GateResult.failed` as a mapping.
    """
    if not _present(record.get(RAW)):
        return {name: jsonable(record[name]) for name in CANDLE_COLUMNS if name in record}
    text = str(record[RAW])
    stored, escaped, truncated = truncated_text(text, RAW_LIMIT)
    row: dict[str, Any] = {RAW: stored}
    if truncated:
        row.update(raw_length=len(text), truncated=True)
    if _present(record.get(FILE)):
        file = str(record[FILE])
        row[FILE] = storable_text(file)
        escaped = escaped or row[FILE] != file
    for name in (LINE, OPEN_TIME):
        if name in record and _present(record[name]):
            row[name] = jsonable(record[name])
    if escaped:
        row["escaped"] = True
    return row


def _present(value: Any) -> bool:
    return value is not None and not (pd.api.types.is_scalar(value) and pd.isna(value))


def _records(failed: pd.DataFrame) -> list[dict[str, Any]]:
    # Series.to_dict("records") keeps pandas scalars (Timestamp, NA) that jsonable() understands.
    records: list[dict[str, Any]] = failed.to_dict("records")
    return records


def _quarantine_row(record: Mapping[str, Any]) -> dict[str, Any]:
    opened = record.get(OPEN_TIME)
    return {
        "open_time": pd.Timestamp(opened).to_pydatetime() if _present(opened) else None,
        "raw_row": raw_row(record),
        "failed_expectation": _fit(str(record[FAILED_EXPECTATION]), _EXPECTATION_WIDTH),
        "reason": _reason(str(record[REASON])),
    }


def _reason(text: str) -> str:
    stored, _escaped, truncated = truncated_text(text, REASON_LIMIT)
    return f"{stored}… ({len(text)} characters in all)" if truncated else stored


def _fit(names: str, width: int) -> str:
    """The ``"; "``-joined expectation names cut to ``width``, saying how many were left out (``reason``
    still lists them all)."""
    if len(names) <= width:
        return names
    parts = names.split(_SEPARATOR)
    for kept in range(len(parts) - 1, 0, -1):
        text = f"{_SEPARATOR.join(parts[:kept])}{_SEPARATOR}+{len(parts) - kept} more"
        if len(text) <= width:
            return text
    return names[: width - 1] + "…"


def _airflow_ids(airflow: Mapping[str, str] | None) -> dict[str, str | None]:
    if airflow is None:
        return {}
    unknown = sorted(set(airflow) - set(_AIRFLOW_KEYS))
    if unknown:
        raise QualityStoreError(
            f"airflow ids may be {', '.join(_AIRFLOW_KEYS)}; got unknown key(s) {', '.join(unknown)}"
        )
    return {name: airflow.get(name) for name in _AIRFLOW_KEYS}


def _run_results(result: GateResult, source: str) -> dict[str, Any]:
    results = {
        "source": source,
        "now": result.now.isoformat(),
        "rows_passed": len(result.passed),
        "rows_skipped": result.rows_skipped,
        "failed_fraction": result.failed_fraction,
        "max_failed_fraction": result.max_failed_fraction,
        "within_threshold": result.failed_fraction <= result.max_failed_fraction,
        "expectations": [
            {
                "name": o.name,
                "expectation_type": o.expectation_type,
                "columns": list(o.columns),
                "success": o.success,
                "unexpected_count": o.unexpected_count,
            }
            for o in result.results
        ],
        "gx": result.summary,
    }
    stored: dict[str, Any] = storable_json(results)
    return stored
