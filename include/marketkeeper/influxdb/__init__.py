"""InfluxDB over its v1-compatible HTTP API: line protocol escaping, InfluxQL quoting and the client."""

from marketkeeper.influxdb.client import (
    InfluxDBClient,
    InfluxDBError,
    InfluxDBWriteError,
    InfluxQLError,
    Point,
    Series,
    ServerInfo,
)
from marketkeeper.influxdb.influxql import format_time, quote_identifier, quote_string
from marketkeeper.influxdb.lineprotocol import (
    FieldValue,
    escape_field_key,
    escape_measurement,
    escape_tag,
    format_field_value,
    format_line,
    format_lines,
)

__all__ = [
    "FieldValue",
    "InfluxDBClient",
    "InfluxDBError",
    "InfluxDBWriteError",
    "InfluxQLError",
    "Point",
    "Series",
    "ServerInfo",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
    "format_field_value",
    "format_line",
    "format_lines",
    "format_time",
    "quote_identifier",
    "quote_string",
]
