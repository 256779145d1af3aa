"""The HTTP side of the InfluxDB client: a retrying session, its credentials, and text safe to show.

Credentials never travel in the URL: ``http://user:pass@host:8086`` is split into the credential-free URL,
which is all that names the server in messages, logs and ``repr``, and HTTP basic auth. Every text built
from a server answer or a connection error goes through :meth:`HTTPTransport.scrub` before it leaves, so
a password or token cannot reach an exception, a log line or a ledger row even if a server echoes it.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from marketkeeper.errors import ConfigurationError, StoreUnavailableError

__all__ = ["HTTPTransport", "server_message", "split_credentials"]

log = logging.getLogger(__name__)

_RETRY_STATUSES: Final = (500, 502, 503, 504)
_HIDDEN: Final = "***"


def _netloc_without_userinfo(netloc: str) -> str:
    return netloc.rsplit("@", 1)[1] if "@" in netloc else netloc


def split_credentials(
    url: str, *, username: str | None = None, password: str | None = None
) -> tuple[str, str | None, str | None]:
    """Take ``user:password@`` out of ``url``: ``(credential-free URL, username, password)``.

    Credentials in the URL and given separately must agree; either place alone is fine.

    :param url: the server's base URL, e.g. ``http://user:pass@influx:8086``; a trailing ``/`` is dropped.
    :param username: the username given apart from the URL, if any.
    :param password: the password given apart from the URL, if any.
    :raises ConfigurationError: not an http(s) URL, a query or fragment in it, or credentials that disagree
        (the message shows the URL without its credentials).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"InfluxDB URL must be a str, got {type(url).__name__}")
    parts = urlsplit(url.strip())
    clean = urlunsplit(parts._replace(netloc=_netloc_without_userinfo(parts.netloc))).rstrip("/")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"InfluxDB URL must look like http://host:8086 or https://host, got {clean!r}")
    if parts.query or parts.fragment:
        # A query string is where tokens hide (?u=..&p=..): refuse rather than guess what it holds.
        shown = urlunsplit(parts._replace(netloc=_netloc_without_userinfo(parts.netloc), query="", fragment=""))
        raise ConfigurationError(
            f"InfluxDB URL {shown.rstrip('/')!r} must not have a query string or fragment; "
            "give credentials as username/password or token"
        )
    url_user = unquote(parts.username) if parts.username is not None else None
    url_password = unquote(parts.password) if parts.password is not None else None
    if url_user is not None:
        if username is not None and username != url_user:
            raise ConfigurationError(
                f"InfluxDB URL {clean!r} names user {url_user!r} but the username setting is {username!r}; "
                "give the credentials in one place"
            )
        if password is not None and url_password is not None and password != url_password:
            raise ConfigurationError(
                f"InfluxDB URL {clean!r} carries a password that differs from the password setting; "
                "give the credentials in one place"
            )
        username = url_user
        password = password if url_password is None else url_password
    return clean, username, password


def server_message(response: requests.Response) -> str:
    """The server's own error text of a failed answer (JSON ``error``, the error header, or the body)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.headers.get("X-Influxdb-Error") or response.text.strip() or response.reason or ""


class HTTPTransport:
    """A ``requests`` session on one InfluxDB server with retries, auth headers and scrubbed errors.

    :param url: the credential-free base URL (see :func:`split_credentials`).
    :param token: sent as ``Authorization: Token <token>``.
    :param username: HTTP basic auth user; needs ``password``.
    :param password: HTTP basic auth password.
    :param timeout: seconds to connect and, separately, to wait for an answer.
    :param max_retries: retries of a request after a 5xx answer or a connection error.
    :param backoff_factor: retries wait 0, then 2, 4, 8... times this many seconds (urllib3's schedule).
    :param gzip_answers: send ``Accept-Encoding: gzip``; otherwise ``identity`` (requests asks for gzip by
        default, and InfluxDB's on-the-fly compression costs more than the transfer it saves on a LAN).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        username: str | None,
        password: str | None,
        timeout: float,
        max_retries: int,
        backoff_factor: float,
        gzip_answers: bool = False,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._secrets = tuple(s for s in (token, password) if s)
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            backoff_factor=backoff_factor,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.headers["Accept-Encoding"] = "gzip" if gzip_answers else "identity"
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if token:
            self.session.headers["Authorization"] = f"Token {token}"
        elif username is not None and password is not None:
            self.session.auth = (username, password)

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this transport (and its URL-encoded form) replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, _HIDDEN)
            quoted = quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, _HIDDEN)
        return text

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request (retried as configured) and return the answer, whatever its status.

        :raises StoreUnavailableError: the server could not be reached, naming the URL (never a secret).
        """
        try:
            return self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise StoreUnavailableError("InfluxDB", self.scrub(f"{self.url}: {type(exc).__name__}: {exc}")) from exc

    def close(self) -> None:
        self.session.close()
