"""The exception hierarchy: every failure marketkeeper raises names what was wrong and where."""

from __future__ import annotations


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
