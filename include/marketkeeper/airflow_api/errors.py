"""The errors of the Airflow REST client: one class per kind of refusal, each message one line, never a secret."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import requests

from marketkeeper.errors import MarketkeeperError

__all__ = [
    "AirflowAPIError",
    "AirflowAuthError",
    "AirflowConflictError",
    "AirflowNotFoundError",
    "AirflowUnavailableError",
    "AirflowWaitTimeoutError",
    "detail_of",
    "one_line",
    "safe_url",
]


class AirflowAPIError(MarketkeeperError):
    """Airflow refused or did not answer a request; the message names the server, the request and the reason."""


class AirflowAuthError(AirflowAPIError):
    """The credentials were refused (HTTP 401) or the user may not do this (HTTP 403)."""


class AirflowNotFoundError(AirflowAPIError):
    """The DAG, run, backfill or Variable does not exist on this Airflow (HTTP 404)."""


class AirflowConflictError(AirflowAPIError):
    """Airflow refused because of its current state (HTTP 409), e.g. a backfill of the DAG is already running."""


class AirflowUnavailableError(AirflowAPIError):
    """The API server did not answer, or answered with a server error (HTTP 5xx)."""


class AirflowWaitTimeoutError(AirflowAPIError):
    """A run or backfill did not finish in time; it goes on in Airflow (nothing is cancelled)."""


def safe_url(url: str) -> str:
    """``url`` without user info, so a ``http://user:pass@host`` never reaches a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def one_line(text: str, limit: int = 300) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def detail_of(response: requests.Response) -> str:
    """Airflow's reason: ``detail`` as a string, or a validation error list as ``loc: msg`` (never its input)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or response.text
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("reason") or detail)
    return str(detail)
