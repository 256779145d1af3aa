"""The exception hierarchy: every failure marketkeeper raises names what was wrong and where (series and range
spelled by :func:`series_context` and :func:`format_range`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marketkeeper.candles import SeriesKey


class MarketkeeperError(Exception):
    """Base class of every error marketkeeper raises on purpose."""


class ConfigurationError(MarketkeeperError):
    """A setting or an Airflow Connection is missing or malformed."""


class StoreUnavailableError(MarketkeeperError):
    """A store (PostgreSQL, Redis, InfluxDB) could not be reached."""

    def __init__(self, store: str, cause: str) -> None:
        super().__init__(f"{store} is unreachable: {cause}")
        self.store = store
        self.cause = cause


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (a database error's own driver message, not the SQL after it),
    or its type's name: what an operator needs, without a traceback."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def describe(exc: BaseException) -> str:
    """``ErrorType: first line``: a failure's cause as a log line, a map label or a gap's ``last_error`` shows it."""
    return f"{type(exc).__name__}: {first_line(exc)}"


def format_range(start: datetime, end: datetime) -> str:
    """A half-open range as every message spells it: ``[2024-05-06T00:00:00+00:00, 2024-05-07T00:00:00+00:00)``."""
    return f"[{start.isoformat()}, {end.isoformat()})"


def series_context(
    key: SeriesKey | None = None, start: datetime | None = None, end: datetime | None = None
) -> list[str]:
    """The parts of an error's context that name a series and a range (``series K``, ``range [a, b)``), each
    only when known: the errors of sources and stores join them after their own parts."""
    context = [] if key is None else [f"series {key}"]
    if start is not None and end is not None:
        context.append(f"range {format_range(start, end)}")
    return context
