"""A small client of a running Airflow's public REST API (v2): a token, then a backfill of a DAG.

Used by ``marketkeeper backfill --via airflow``; needs only ``requests``, not Airflow itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import requests

from marketkeeper.errors import MarketkeeperError
from marketkeeper.timeframes import check_range

__all__ = ["AirflowAPIError", "AirflowClient", "BackfillCreated"]

#: ``none``: only intervals without a run; ``failed``: also failed runs; ``completed``: every run again.
ReprocessBehavior = Literal["none", "failed", "completed"]
_TIMEOUT: Final = 30.0


class AirflowAPIError(MarketkeeperError):
    """Airflow refused or did not answer a request; the message names the URL, status and Airflow's detail."""


@dataclass(frozen=True)
class BackfillCreated:
    id: int
    dag_id: str
    from_date: str
    to_date: str
    reprocess_behavior: str


class AirflowClient:
    """Authenticates against ``/auth/token`` and calls ``/api/v2``.

    :param url: the API server's base URL, e.g. ``http://localhost:8080``.
    :param username: with ``password``, sent to ``POST /auth/token``; without, ``GET /auth/token`` is used
        (only valid when ``[core] simple_auth_manager_all_admins`` is on).
    :param password: the user's password (never logged).
    """

    def __init__(
        self, url: str, *, username: str | None = None, password: str | None = None, timeout: float = _TIMEOUT
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self._session = requests.Session()
        self._token: str | None = None

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        target = f"{self.url}{path}"
        try:
            response = self._session.request(method, target, timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            raise AirflowAPIError(f"Airflow at {self.url} did not answer {method} {path}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AirflowAPIError(f"{method} {target} -> HTTP {response.status_code}: {str(detail)[:500]}")
        try:
            return response.json()
        except ValueError as exc:
            raise AirflowAPIError(f"{method} {target} answered something that is not JSON") from exc

    def token(self) -> str:
        """A JWT for the public API (fetched once per client)."""
        if self._token is None:
            if self.username is not None:
                body = {"username": self.username, "password": self._password or ""}
                answer = self._request("POST", "/auth/token", json=body)
            else:
                answer = self._request("GET", "/auth/token")
            token = answer.get("access_token") if isinstance(answer, dict) else None
            if not token:
                raise AirflowAPIError(f"{self.url}/auth/token answered without an access_token")
            self._token = str(token)
        return self._token

    def create_backfill(
        self,
        dag_id: str,
        from_date: datetime,
        to_date: datetime,
        *,
        conf: dict[str, Any] | None = None,
        reprocess_behavior: ReprocessBehavior = "failed",
        max_active_runs: int = 4,
    ) -> BackfillCreated:
        """``POST /api/v2/backfills``: runs of ``dag_id`` for every interval in ``[from_date, to_date]``.

        :raises AirflowAPIError: naming the HTTP status and Airflow's reason (e.g. an unknown DAG).
        """
        from_date, to_date = check_range(from_date, to_date)
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "run_backwards": False,
            "dag_run_conf": conf or {},
            "reprocess_behavior": reprocess_behavior,
            "max_active_runs": max_active_runs,
        }
        headers = {"Authorization": f"Bearer {self.token()}"}
        answer = self._request("POST", "/api/v2/backfills", json=body, headers=headers)
        try:
            return BackfillCreated(
                id=int(answer["id"]),
                dag_id=str(answer["dag_id"]),
                from_date=str(answer["from_date"]),
                to_date=str(answer["to_date"]),
                reprocess_behavior=str(answer.get("reprocess_behavior", reprocess_behavior)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AirflowAPIError(f"{self.url}/api/v2/backfills answered an unexpected body: {answer!r}") from exc

    def close(self) -> None:
        self._session.close()
