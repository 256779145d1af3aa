"""``marketkeeper serve``: the read-only market-data HTTP API for bots (:mod:`marketkeeper.marketdata.http`)."""

from __future__ import annotations

from typing import Annotated

import typer

from marketkeeper.cli.common import fail, user_errors


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless a proxy with TLS is in front).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8090,
    allow_anonymous: Annotated[
        bool, typer.Option("--allow-anonymous", help="Serve requests without an API key (off by default).")
    ] = False,
) -> None:
    """Serve candles, coverage, markets and signals over HTTP (read-only; OpenAPI page at /docs).

    Requests need ``Authorization: Bearer KEY`` with a key of MARKETKEEPER_API_KEYS (comma-separated), unless
    anonymous access is enabled with --allow-anonymous or MARKETKEEPER_API_ALLOW_ANONYMOUS=1. The stores are the
    environment's, as for every other command.
    """
    from marketkeeper.settings import get_settings

    with user_errors():
        settings = get_settings()
    secret = settings.marketkeeper_api_keys
    keys = [k.strip() for k in secret.get_secret_value().split(",") if k.strip()] if secret is not None else []
    anonymous = allow_anonymous or settings.marketkeeper_api_allow_anonymous
    if not keys and not anonymous:
        fail("no API keys: set MARKETKEEPER_API_KEYS (comma-separated), or pass --allow-anonymous")

    import uvicorn

    from marketkeeper.marketdata.http import create_app
    from marketkeeper.marketdata.provider import HistoricalDataProvider

    with user_errors():
        provider = HistoricalDataProvider.from_settings(settings)
    try:
        with user_errors():
            app = create_app(provider, api_keys=keys, allow_anonymous=anonymous)
        who = "anyone (anonymous access enabled)" if anonymous and not keys else f"{len(keys)} API key(s)"
        typer.echo(f"market-data API on http://{host}:{port} (OpenAPI: /docs) for {who}; {provider.config.summary}")
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        provider.close()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)
