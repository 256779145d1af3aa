"""The values the InfluxDB client hands back and takes: a ping's answer, a query's series, a point to write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from marketkeeper.influxdb.lineprotocol import FieldValue, format_line
from marketkeeper.timeframes import to_ns

__all__ = ["Point", "Series", "ServerInfo"]


@dataclass(frozen=True)
class ServerInfo:
    """What a ping learned about the server."""

    version: str
    latency_ms: float


@dataclass(frozen=True)
class Series:
    """One series of a query result: rows of ``values`` under ``columns``, grouped by ``tags``."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]


@dataclass(frozen=True)
class Point:
    """One point to write; ``time`` ``None`` lets the server stamp it."""

    measurement: str
    fields: Mapping[str, FieldValue | None]
    tags: Mapping[str, str] = field(default_factory=dict)
    time: datetime | None = None

    def to_line(self) -> str:
        """The point as line protocol with a nanosecond timestamp."""
        return format_line(self.measurement, self.tags, self.fields, None if self.time is None else to_ns(self.time))
