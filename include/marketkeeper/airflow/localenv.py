"""Print ``export AIRFLOW_CONN_...`` lines that point local Airflow at the stores the CLI uses.

``scripts/airflow.sh`` evaluates the output, so DAG tasks and ``marketkeeper`` commands read the same
``DATABASE_URL``/``INFLUXDB_URL``/``REDIS_URL``. Run as ``python -m marketkeeper.airflow.localenv``. This
module does not import Airflow: it only translates settings into Connection JSON.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

from marketkeeper.errors import ConfigurationError
from marketkeeper.settings import Settings

LEDGER_ENV = "AIRFLOW_CONN_MARKETKEEPER_LEDGER"
INFLUXDB_ENV = "AIRFLOW_CONN_MARKETKEEPER_INFLUXDB_DEFAULT"
REDIS_ENV = "AIRFLOW_CONN_MARKETKEEPER_REDIS_DEFAULT"


def _drop_empty(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value not in (None, "", {})}


def ledger_connection(settings: Settings) -> dict[str, Any]:
    """Connection JSON for ``Settings.ledger_url``: a ``postgres`` connection, or ``sqlite`` naming the file.

    :raises ConfigurationError: the ledger URL is neither PostgreSQL nor SQLite.
    """
    from sqlalchemy.engine import make_url

    url = make_url(settings.ledger_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigurationError(f"the ledger URL {url!r} is an in-memory SQLite database; Airflow needs a file")
        return {"conn_type": "sqlite", "host": url.database}
    if url.get_backend_name() == "postgresql":
        query = {key: value if isinstance(value, str) else list(value) for key, value in url.query.items()}
        return _drop_empty(
            {
                "conn_type": "postgres",
                "host": url.host,
                "port": url.port,
                "login": url.username,
                "password": url.password,
                "schema": url.database,
                # PostgresHook.sqlalchemy_url copies this back into the URL's query (sslmode and friends).
                "extra": {"sqlalchemy_query": query} if query else None,
            }
        )
    raise ConfigurationError(
        f"DATABASE_URL uses {url.get_backend_name()!r}; the ledger supports PostgreSQL and SQLite only"
    )


def influxdb_connection(settings: Settings) -> dict[str, Any] | None:
    """Connection JSON for ``INFLUXDB_URL`` and its companions, or ``None`` when InfluxDB is not set."""
    if not settings.influxdb_url:
        return None
    parts = urlsplit(settings.influxdb_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"INFLUXDB_URL must look like http://host:8086, got {settings.influxdb_url!r}")
    password = settings.influxdb_password.get_secret_value() if settings.influxdb_password else None
    token = settings.influxdb_token.get_secret_value() if settings.influxdb_token else None
    return _drop_empty(
        {
            "conn_type": "marketkeeper_influxdb",
            "host": parts.hostname,
            "port": parts.port,
            "schema": parts.scheme,
            "login": settings.influxdb_username or (unquote(parts.username) if parts.username else None),
            "password": password or (unquote(parts.password) if parts.password else None),
            "extra": _drop_empty({"database": settings.influxdb_bucket, "token": token, "org": settings.influxdb_org}),
        }
    )


def redis_connection(settings: Settings) -> dict[str, Any] | None:
    """Connection JSON for ``REDIS_URL``, or ``None`` when Redis is not configured."""
    if settings.redis_url is None:
        return None
    raw = settings.redis_url.get_secret_value()
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        # Never echo the URL: it may hold the password.
        raise ConfigurationError("REDIS_URL must look like redis://[:password@]host:6379/0")
    db_path = parts.path.strip("/")
    if db_path and not db_path.isdigit():
        raise ConfigurationError(f"REDIS_URL's path must be a DB number, got {db_path!r}")
    return _drop_empty(
        {
            "conn_type": "marketkeeper_redis",
            "host": parts.hostname,
            "port": parts.port,
            "login": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "extra": {"db": int(db_path or 0), "ssl": parts.scheme == "rediss"},
        }
    )


def export_lines(settings: Settings, environ: dict[str, str] | None = None) -> list[str]:
    """Shell ``export`` lines for every store ``settings`` configure; a variable already in ``environ`` wins.

    :param settings: where the stores are.
    :param environ: the current environment (``os.environ`` by default).
    """
    environ = dict(os.environ) if environ is None else environ
    lines = []
    for name, conn in (
        (LEDGER_ENV, ledger_connection(settings)),
        (INFLUXDB_ENV, influxdb_connection(settings)),
        (REDIS_ENV, redis_connection(settings)),
    ):
        if conn is not None and name not in environ:
            lines.append(f"export {name}={shlex.quote(json.dumps(conn, sort_keys=True))}")
    return lines


def main() -> int:
    try:
        lines = export_lines(Settings())
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
