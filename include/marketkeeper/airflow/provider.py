"""Provider metadata Airflow discovers through the ``apache_airflow_provider`` entry point in pyproject.toml.

Airflow calls :func:`get_provider_info` whenever it starts, so this module imports nothing beyond the standard
library: an error here would break every ``airflow`` command. The connection form is declared here
(``conn-fields``/``ui-field-behaviour``, the Airflow 3.2+ way) rather than in the hooks' deprecated
``get_connection_form_widgets``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGE_NAME = "marketkeeper"

_INFLUXDB_FIELDS: dict[str, Any] = {
    "token": {
        "label": "Token",
        "description": "Token auth (InfluxDB 1.8+ / 2.x v1 API). Leave empty to use username and password.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "database": {
        "label": "Database",
        "description": "Database (1.x) or bucket (2.x v1 mapping) the candles live in.",
        "schema": {"type": ["string", "null"], "default": "marketkeeper"},
    },
    "org": {
        "label": "Organization",
        "description": "InfluxDB 2.x organization; unused by 1.x.",
        "schema": {"type": ["string", "null"]},
    },
    "retention_policy": {
        "label": "Retention policy",
        "description": "Empty: the database's default retention policy.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 10, "minimum": 0},
    },
}

_REDIS_FIELDS: dict[str, Any] = {
    "db": {"label": "DB", "schema": {"type": ["integer", "null"], "default": 0, "minimum": 0}},
    "prefix": {
        "label": "Key prefix",
        "description": "Every key marketkeeper writes starts with this.",
        "schema": {"type": ["string", "null"], "default": "marketkeeper:"},
    },
    "ssl": {"label": "Use TLS (rediss://)", "schema": {"type": ["boolean", "null"], "default": False}},
    # The TLS extras the Redis provider's hook reads (marketkeeper's RedisHook builds on it).
    "ssl_cert_reqs": {
        "label": "TLS verify mode",
        "schema": {"type": ["string", "null"], "enum": ["required", "optional", "none", None], "default": "required"},
    },
    "ssl_ca_certs": {"label": "CA certificate path", "schema": {"type": ["string", "null"]}},
    "ssl_certfile": {"label": "Client certificate path", "schema": {"type": ["string", "null"]}},
    "ssl_keyfile": {"label": "Client private key path", "schema": {"type": ["string", "null"]}},
    "ssl_check_hostname": {"label": "Check the server's host name", "schema": {"type": ["boolean", "null"]}},
    "socket_timeout": {
        "label": "Socket timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 5, "minimum": 0},
    },
}


_ACCOUNT_FIELDS: dict[str, Any] = {
    "kind": {
        "label": "Kind",
        "description": "exchange: balances from ccxt fetch_balance; paper: derived from the bot's trades.",
        "schema": {"type": ["string", "null"], "enum": ["exchange", "paper", None], "default": "exchange"},
    },
    "exchange": {
        "label": "Exchange (ccxt id)",
        "description": "Exchange accounts: the ccxt exchange id, e.g. binance.",
        "schema": {"type": ["string", "null"]},
    },
    "user_id": {
        "label": "User id",
        "description": "Exchange accounts: the ledger user owning the account (paper accounts: the bot's user).",
        "schema": {"type": ["string", "null"]},
    },
    "bot_id": {"label": "Bot id", "description": "Paper accounts: the bot.", "schema": {"type": ["string", "null"]}},
    "starting_capital": {
        "label": "Starting capital (JSON)",
        "description": 'Paper accounts: currency to amount before the first trade, e.g. {"USDT": "10000"}.',
        "schema": {"type": ["string", "null"]},
    },
    "currencies": {
        "label": "Currencies",
        "description": "Comma-separated; record only these. Empty: every currency with a balance.",
        "schema": {"type": ["string", "null"]},
    },
    "passphrase": {
        "label": "API passphrase",
        "description": "Only for exchanges that issue one (OKX, KuCoin...).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
}


def _version() -> str:
    try:
        return version(PACKAGE_NAME)
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    """Describe marketkeeper's hooks and connection types to Airflow's ProvidersManager.

    The dict follows ``airflow/provider_info.schema.json`` (Airflow 3.3); ``package-name`` must equal the
    distribution name or Airflow refuses the provider.
    """
    return {
        "package-name": PACKAGE_NAME,
        "name": "marketkeeper",
        "description": (
            "Hooks for marketkeeper's stores (InfluxDB v1 HTTP API, Redis on top of the Redis provider's hook) "
            "and balance accounts."
        ),
        "versions": [_version()],
        "integrations": [
            {"integration-name": "marketkeeper InfluxDB", "external-doc-url": "https://docs.influxdata.com/"},
            {"integration-name": "marketkeeper Redis", "external-doc-url": "https://redis.io/"},
            {
                "integration-name": "marketkeeper balance accounts",
                "external-doc-url": "https://docs.ccxt.com/#/README?id=account-balance",
            },
        ],
        "hooks": [
            {
                "integration-name": "marketkeeper InfluxDB",
                "python-modules": ["marketkeeper.airflow.hooks"],
            },
            {
                "integration-name": "marketkeeper Redis",
                "python-modules": ["marketkeeper.airflow.hooks"],
            },
            {
                "integration-name": "marketkeeper balance accounts",
                "python-modules": ["marketkeeper.airflow.accounts"],
            },
        ],
        "connection-types": [
            {
                "connection-type": "marketkeeper_influxdb",
                "hook-class-name": "marketkeeper.airflow.hooks.InfluxDBHook",
                "hook-name": "InfluxDB (v1 API, marketkeeper)",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {
                        "schema": "Protocol",
                        "login": "Username (v1 auth)",
                        "password": "Password (v1 auth)",
                    },
                    "placeholders": {
                        "host": "127.0.0.1",
                        "port": "8086",
                        "schema": "http or https",
                        "database": "marketkeeper",
                        "timeout": "10",
                    },
                },
                "conn-fields": _INFLUXDB_FIELDS,
            },
            {
                "connection-type": "marketkeeper_redis",
                "hook-class-name": "marketkeeper.airflow.hooks.RedisHook",
                "hook-name": "Redis (marketkeeper)",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {"login": "Username (Redis ACL, optional)"},
                    "placeholders": {
                        "host": "127.0.0.1",
                        "port": "6379",
                        "db": "0",
                        "prefix": "marketkeeper:",
                    },
                },
                "conn-fields": _REDIS_FIELDS,
            },
            {
                "connection-type": "marketkeeper_account",
                "hook-class-name": "marketkeeper.airflow.accounts.AccountHook",
                "hook-name": "Balance account (marketkeeper)",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "API key", "password": "API secret"},
                    "placeholders": {"exchange": "binance", "starting_capital": '{"USDT": "10000"}'},
                },
                "conn-fields": _ACCOUNT_FIELDS,
            },
        ],
    }
