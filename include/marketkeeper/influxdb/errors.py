"""The errors of the InfluxDB client: every one names the server (never its credentials) and the cause."""

from __future__ import annotations

from marketkeeper.errors import ConfigurationError, MarketkeeperError

__all__ = ["InfluxDBDatabaseNotFoundError", "InfluxDBError", "InfluxDBWriteError", "InfluxQLError"]


class InfluxDBError(MarketkeeperError):
    """InfluxDB answered with an error.

    :ivar status: the HTTP status, or ``None`` when the error is inside a 200 answer.
    :ivar server_message: the server's own error text.
    """

    def __init__(self, message: str, *, status: int | None, server_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class InfluxDBWriteError(InfluxDBError):
    """A write was refused.

    InfluxDB 1.x stores the valid lines of a refused batch and drops the rest ("partial write"); batches
    before the refused one were stored, and the client sends none after it.

    :ivar line: the first line the server names as unparsable, if it names one.
    :ivar lines_before: how many lines were accepted in earlier batches of the same call.
    """

    def __init__(
        self, message: str, *, status: int | None, server_message: str, line: str | None, lines_before: int
    ) -> None:
        super().__init__(message, status=status, server_message=server_message)
        self.line = line
        self.lines_before = lines_before


class InfluxQLError(InfluxDBError):
    """A query, or one statement of it, failed."""


class InfluxDBDatabaseNotFoundError(InfluxDBError, ConfigurationError):
    """The client's database does not exist on the server: a write or a query found nothing to work on.

    Databases are created by an explicit step (:meth:`InfluxDBClient.create_database`, which
    ``marketkeeper db upgrade`` runs), never by a write, so a typo in ``INFLUXDB_BUCKET`` fails here instead
    of filling a new database.

    :ivar database: the missing database.
    :ivar url: the server, without credentials.
    """

    def __init__(self, *, database: str, url: str, status: int | None, server_message: str) -> None:
        super().__init__(
            f"InfluxDB database {database!r} does not exist on {url}; create it with `marketkeeper db upgrade` "
            "(or check INFLUXDB_BUCKET for a typo)",
            status=status,
            server_message=server_message,
        )
        self.database = database
        self.url = url
