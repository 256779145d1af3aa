"""Quoting for InfluxQL: identifiers and, where a bound parameter cannot be used, literals.

Values belong in bound parameters (``$name`` in the query, ``params=`` on :meth:`InfluxDBClient.query`),
which InfluxDB 1.6 supports in ``WHERE`` clauses; identifiers (databases, measurements, tag and field keys)
cannot be bound, so they go through :func:`quote_identifier`. InfluxQL strings know the escapes ``\\\\``,
``\\n`` and the quote character; a carriage return has none (the parser reads it as a newline), so it is
rejected.
"""

from __future__ import annotations

from datetime import UTC, datetime


def _quote(text: str, quote: str, kind: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{kind} must be a str, got {type(text).__name__}: {text!r}")
    if "\r" in text:
        raise ValueError(f"{kind} {text!r} contains a carriage return, which InfluxQL cannot express")
    escaped = text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
    return quote + escaped + quote


def quote_identifier(name: str) -> str:
    """Double-quote an identifier (database, retention policy, measurement, tag or field key).

    :raises ValueError: the name is empty or contains a carriage return.
    """
    if name == "":
        raise ValueError("an InfluxQL identifier must not be empty")
    return _quote(name, '"', "identifier")


def quote_string(value: str) -> str:
    """Single-quote a string literal; prefer a bound parameter where InfluxQL allows one.

    :raises ValueError: the value contains a carriage return.
    """
    return _quote(value, "'", "string literal")


def format_time(dt: datetime) -> str:
    """RFC3339 text of an aware datetime in UTC with microseconds, e.g. ``2024-01-02T03:04:05.000006Z``.

    The result is a value for a bound parameter (``time >= $start``) or for :func:`quote_string`.

    :raises ValueError: ``dt`` is naive.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} has no timezone; pass an aware UTC datetime")
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
