"""InfluxDB over its v1-compatible HTTP API: line protocol escaping, InfluxQL quoting, the client and its errors."""

from marketkeeper.influxdb.client import InfluxDBClient, Point, Series, ServerInfo
from marketkeeper.influxdb.errors import (
    InfluxDBDatabaseNotFoundError,
    InfluxDBError,
    InfluxDBWriteError,
    InfluxQLError,
)
from marketkeeper.influxdb.http import split_credentials
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
    "InfluxDBDatabaseNotFoundError",
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
    "split_credentials",
]
