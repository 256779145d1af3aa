"""Quality runs and quarantined candles: a run's row, the quarantine of its window replaced in one go, and
the runs and quarantine rows of a series.

A window's quarantine is *replaced*, not appended to: re-running the gate over the same series, range and
source leaves one copy of each failed row, while every ``data_quality_runs`` row stays as the history.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from marketkeeper.ledger.models import DataQualityRun, QuarantinedCandle
from marketkeeper.repositories.base import Repository
from marketkeeper.repositories.errors import ValidationError
from marketkeeper.repositories.integrity import integrity_error
from marketkeeper.repositories.validation import coerce_column

__all__ = ["QUARANTINE_FIELDS", "QualityRepository", "SeriesQualityActivity"]

#: The fields of a quarantine row the caller gives; the series, source and run come from the run.
QUARANTINE_FIELDS: Final = ("open_time", "raw_row", "failed_expectation", "reason")
_QUARANTINE: Final = "QuarantinedCandle"


@dataclass(frozen=True)
class SeriesQualityActivity:
    """What the quality gate saw of one series: over a recent window, and its newest run ever."""

    runs: int = 0
    rows_checked: int = 0
    rows_failed: int = 0
    quarantined: int = 0
    last_run_at: datetime | None = None
    last_dag_id: str | None = None
    last_success: bool | None = None


class QualityRepository(Repository[DataQualityRun]):
    """Data quality runs, newest first, and the quarantined candles they filed."""

    model = DataQualityRun
    default_order = ("-run_at",)
    non_negative_fields = frozenset({"rows_checked", "rows_failed"})

    def add_run(self, **values: Any) -> DataQualityRun:
        """Insert one ``data_quality_runs`` row and return it with its id set.

        :param values: columns of :class:`~marketkeeper.ledger.models.DataQualityRun` (suite, exchange,
            symbol, timeframe, range_start, range_end, rows_checked, rows_failed, success, results, Airflow ids).
        :raises ValidationError: an unknown field or a value that does not fit its column.
        """
        return self.create(**values)

    def replace_window_quarantine(self, run: DataQualityRun, *, source: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """File ``rows`` under ``run``, replacing what earlier runs filed for the same window.

        Deleted first: quarantine rows of ``run``'s series and ``source`` with an open time in
        ``[run.range_start, run.range_end)``, and those any run of the same suite over exactly this range
        filed (that is how rows without an open time, such as unparseable lines, are found again).

        :param run: the run the rows belong to, flushed (from :meth:`add_run`), with its series and range set.
        :param source: the source label stored on every row.
        :param rows: mappings of :data:`QUARANTINE_FIELDS`.
        :returns: how many rows were filed.
        :raises ValidationError: a row has unknown fields or a value that does not fit (nothing is written),
            text the database refuses (NUL, lone surrogates: escape them first), or ``run`` has no series or range.
        """
        if run.id is None or None in (run.exchange, run.symbol, run.timeframe, run.range_start, run.range_end):
            raise ValidationError("the run must be flushed and name a series and range", model=self.name)
        owned = {
            "exchange": run.exchange,
            "symbol": run.symbol,
            "timeframe": run.timeframe,
            "source": source,
            "data_quality_run_id": run.id,
        }
        batch = [self._quarantine_values(row, owned) for row in rows]
        same_window = sa.select(DataQualityRun.id).where(
            DataQualityRun.exchange == run.exchange,
            DataQualityRun.symbol == run.symbol,
            DataQualityRun.timeframe == run.timeframe,
            DataQualityRun.suite == run.suite,
            DataQualityRun.range_start == run.range_start,
            DataQualityRun.range_end == run.range_end,
        )
        self._execute(
            sa.delete(QuarantinedCandle)
            .where(
                *self._series(run.exchange, run.symbol, run.timeframe),
                QuarantinedCandle.source == source,
                sa.or_(
                    sa.and_(
                        QuarantinedCandle.open_time >= run.range_start,
                        QuarantinedCandle.open_time < run.range_end,
                    ),
                    QuarantinedCandle.data_quality_run_id.in_(same_window),
                ),
            )
            .execution_options(synchronize_session=False),
            operation="delete",
        )
        if batch:
            self._execute(sa.insert(QuarantinedCandle), batch, operation="create")
        return len(batch)

    def runs_of(
        self, exchange: str, symbol: str | None = None, timeframe: str | None = None
    ) -> builtins.list[DataQualityRun]:
        """The runs over a series (or every series of an exchange or symbol), oldest first."""
        statement = sa.select(DataQualityRun).where(*self._runs_over(exchange, symbol, timeframe))
        return builtins.list(self.session.scalars(statement.order_by(DataQualityRun.id)).all())

    def count_runs(self, exchange: str, symbol: str | None = None, timeframe: str | None = None) -> int:
        """How many runs :meth:`runs_of` would return."""
        statement = (
            sa.select(sa.func.count()).select_from(DataQualityRun).where(*self._runs_over(exchange, symbol, timeframe))
        )
        return self.session.scalar(statement) or 0

    def quarantined(
        self,
        exchange: str,
        symbol: str | None = None,
        timeframe: str | None = None,
        *,
        source: str | None = None,
    ) -> builtins.list[QuarantinedCandle]:
        """The quarantine rows of a series (or of an exchange or symbol), by open time (rows without one last)."""
        statement = sa.select(QuarantinedCandle).where(*self._series(exchange, symbol, timeframe, source))
        ordered = statement.order_by(
            QuarantinedCandle.open_time.is_(None), QuarantinedCandle.open_time, QuarantinedCandle.id
        )
        return builtins.list(self.session.scalars(ordered).all())

    def count_quarantined(
        self, exchange: str, symbol: str | None = None, timeframe: str | None = None, *, source: str | None = None
    ) -> int:
        """How many rows :meth:`quarantined` would return."""
        statement = (
            sa.select(sa.func.count())
            .select_from(QuarantinedCandle)
            .where(*self._series(exchange, symbol, timeframe, source))
        )
        return self.session.scalar(statement) or 0

    def activity_since(self, since: datetime) -> dict[tuple[str, str, str], SeriesQualityActivity]:
        """Per series ``(exchange, symbol, timeframe)``: runs, rows checked and failed and rows quarantined
        since ``since``, and the newest run of all (the ops status; grouped queries, whatever the series count)."""
        session = self.session
        runs = DataQualityRun
        series = (runs.exchange, runs.symbol, runs.timeframe)
        recent = session.execute(
            sa.select(*series, sa.func.count(), sa.func.sum(runs.rows_checked), sa.func.sum(runs.rows_failed))
            .where(runs.run_at >= since, runs.exchange.is_not(None))
            .group_by(*series)
        ).all()
        q = QuarantinedCandle
        quarantined = dict(
            ((str(e), str(s), str(t)), int(n))
            for e, s, t, n in session.execute(
                sa.select(q.exchange, q.symbol, q.timeframe, sa.func.count())
                .where(q.quarantined_at >= since)
                .group_by(q.exchange, q.symbol, q.timeframe)
            ).all()
        )
        newest_ids = sa.select(sa.func.max(runs.id)).where(runs.exchange.is_not(None)).group_by(*series)
        newest = {
            (str(r.exchange), str(r.symbol), str(r.timeframe)): r
            for r in session.scalars(sa.select(runs).where(runs.id.in_(newest_ids))).all()
        }
        found: dict[tuple[str, str, str], SeriesQualityActivity] = {}
        counts = {(str(e), str(s), str(t)): (n, c or 0, f or 0) for e, s, t, n, c, f in recent}
        for key in set(counts) | set(quarantined) | set(newest):
            n, checked, failed = counts.get(key, (0, 0, 0))
            last = newest.get(key)
            found[key] = SeriesQualityActivity(
                runs=n,
                rows_checked=int(checked),
                rows_failed=int(failed),
                quarantined=int(quarantined.get(key, 0)),
                last_run_at=None if last is None else last.run_at,
                last_dag_id=None if last is None else last.dag_id,
                last_success=None if last is None else last.success,
            )
        return found

    @staticmethod
    def _runs_over(exchange: str, symbol: str | None, timeframe: str | None) -> builtins.list[sa.ColumnElement[bool]]:
        given = ((DataQualityRun.symbol, symbol), (DataQualityRun.timeframe, timeframe))
        return [DataQualityRun.exchange == exchange, *(column == value for column, value in given if value is not None)]

    @staticmethod
    def _series(
        exchange: str | None, symbol: str | None, timeframe: str | None, source: str | None = None
    ) -> builtins.list[sa.ColumnElement[bool]]:
        given = (
            (QuarantinedCandle.exchange, exchange),
            (QuarantinedCandle.symbol, symbol),
            (QuarantinedCandle.timeframe, timeframe),
            (QuarantinedCandle.source, source),
        )
        return [column == value for column, value in given if value is not None]

    def _quarantine_values(self, row: Mapping[str, Any], owned: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(row) - set(QUARANTINE_FIELDS))
        if unknown:
            raise ValidationError(
                f"unknown field(s) {', '.join(unknown)}; a quarantine row has {', '.join(QUARANTINE_FIELDS)}",
                model=_QUARANTINE,
                field=unknown[0],
            )
        columns = QuarantinedCandle.__table__.c
        values = {
            field: coerce_column(columns[field], row.get(field), model=_QUARANTINE, field=field)
            for field in QUARANTINE_FIELDS
        }
        return {**values, **owned}

    def _execute(self, statement: Any, rows: builtins.list[dict[str, Any]] | None = None, *, operation: str) -> None:
        # Pending ORM changes (the run) first, so a constraint error names the statement that caused it.
        self._flush(operation)
        try:
            if rows is None:
                self.session.execute(statement)
            else:
                self.session.execute(statement, rows)
        except sa.exc.IntegrityError as exc:
            raise integrity_error(exc, model=_QUARANTINE, operation=operation) from exc
        except sa.exc.DataError as exc:
            # PostgreSQL refuses NUL in TEXT and JSONB; marketkeeper.quality.escape makes such text storable.
            raise ValidationError(f"the database refused the {operation}: {exc.orig}", model=_QUARANTINE) from exc
        except UnicodeEncodeError as exc:
            # A lone surrogate: the driver cannot even encode the statement as UTF-8.
            raise ValidationError(f"text the database cannot encode ({exc.reason})", model=_QUARANTINE) from exc
