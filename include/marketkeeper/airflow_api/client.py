"""The client of a running Airflow's public REST API (v2): token auth, DAG runs, task instances, backfills, and
following a run or a backfill to its end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import requests

from marketkeeper.airflow_api.errors import (
    AirflowAPIError,
    AirflowAuthError,
    AirflowConflictError,
    AirflowNotFoundError,
    AirflowUnavailableError,
    AirflowWaitTimeoutError,
    detail_of,
    one_line,
    safe_url,
)
from marketkeeper.airflow_api.models import (
    Backfill,
    DagInfo,
    DagRun,
    ProgressCallback,
    ReprocessBehavior,
    TaskInstance,
    WaitProgress,
)
from marketkeeper.closing import Closing
from marketkeeper.timeframes import check_range

__all__ = ["AirflowClient"]

_TIMEOUT: Final = 30.0
#: Airflow's default ``[api] maximum_page_limit``: larger pages are cut to it, so page through with this size.
_PAGE: Final = 100


class AirflowClient(Closing):
    """Authenticates against ``/auth/token`` and calls ``/api/v2``.

    :param url: the API server's base URL, e.g. ``http://localhost:8080``.
    :param username: with ``password``, sent to ``POST /auth/token``; without, ``GET /auth/token`` is used
        (only valid when ``[core] simple_auth_manager_all_admins`` is on).
    :param password: the user's password (never logged, never in a message, not in ``repr``).
    :param timeout: seconds to wait for each answer.
    """

    def __init__(
        self, url: str, *, username: str | None = None, password: str | None = None, timeout: float = _TIMEOUT
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AirflowAPIError(f"the Airflow URL must look like http://host:8080, got {safe_url(url)!r}")
        self.url = url.rstrip("/")
        #: The URL to print: without any user info.
        self.display_url = safe_url(self.url)
        self.username = username
        self._password = password
        self.timeout = timeout
        self._session = requests.Session()
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"AirflowClient({self.display_url!r}, username={self.username!r})"

    # --- transport ------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return one_line(text)

    def _raw(self, method: str, path: str, **kw: Any) -> requests.Response:
        what = f"{method} {self.display_url}{path}"
        try:
            return self._session.request(method, f"{self.url}{path}", timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            # requests' messages repeat the URL; keep only the cause's class and the host-free reason.
            reason = type(exc).__name__
            inner = exc.args[0] if exc.args else None
            if inner is not None and getattr(inner, "reason", None) is not None:
                reason = f"{reason}: {type(inner.reason).__name__}"
            raise AirflowUnavailableError(self._scrub(f"Airflow did not answer {what} ({reason})")) from exc

    def _check(self, method: str, path: str, response: requests.Response) -> Any:
        what = f"{method} {self.display_url}{path}"
        status = response.status_code
        if status >= 400:
            message = self._scrub(f"{what} -> HTTP {status}: {detail_of(response)}")
            if status in (401, 403):
                raise AirflowAuthError(message)
            if status == 404:
                raise AirflowNotFoundError(message)
            if status == 409:
                raise AirflowConflictError(message)
            if status >= 500:
                raise AirflowUnavailableError(message)
            raise AirflowAPIError(message)
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise AirflowAPIError(f"{what} answered something that is not JSON") from exc

    def _api(self, method: str, path: str, **kw: Any) -> Any:
        """An authenticated ``/api/v2`` call; a token that expired mid-wait is fetched again once."""
        response = self._raw(method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kw)
        if response.status_code == 401:
            self._token = None
            response = self._raw(method, path, headers={"Authorization": f"Bearer {self.token()}"}, **kw)
        return self._check(method, path, response)

    def token(self) -> str:
        """A JWT for the public API (fetched once per client, again after it expires).

        :raises AirflowAuthError: the username or password was refused (the message never holds the password).
        """
        if self._token is None:
            if self.username is not None:
                body = {"username": self.username, "password": self._password or ""}
                path = "/auth/token"
                answer = self._check("POST", path, self._raw("POST", path, json=body))
            else:
                answer = self._check("GET", "/auth/token", self._raw("GET", "/auth/token"))
            token = answer.get("access_token") if isinstance(answer, dict) else None
            if not token:
                raise AirflowAPIError(f"{self.display_url}/auth/token answered without an access_token")
            self._token = str(token)
        return self._token

    # --- DAGs and runs --------------------------------------------------------------------------------------

    def get_dag(self, dag_id: str) -> DagInfo:
        """``GET /api/v2/dags/{dag_id}``.

        :raises AirflowNotFoundError: Airflow has not parsed a DAG of that id.
        """
        answer = self._api("GET", f"/api/v2/dags/{quote(dag_id, safe='')}")
        return DagInfo(
            dag_id=str(answer["dag_id"]),
            is_paused=bool(answer.get("is_paused")),
            has_import_errors=bool(answer.get("has_import_errors")),
        )

    def get_variable(self, key: str) -> str | None:
        """The value of Airflow Variable ``key``, or ``None`` when it is not set."""
        try:
            answer = self._api("GET", f"/api/v2/variables/{quote(key, safe='')}")
        except AirflowNotFoundError:
            return None
        value = answer.get("value") if isinstance(answer, dict) else None
        return None if value is None else str(value)

    def trigger_dag_run(
        self, dag_id: str, *, conf: Mapping[str, Any], run_id: str | None = None, note: str | None = None
    ) -> DagRun:
        """``POST /api/v2/dags/{dag_id}/dagRuns``: a manual run without a logical date, with ``conf`` as params.

        :raises AirflowAPIError: Airflow refused the conf (it validates it against the DAG's params), naming why.
        """
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf)}
        if run_id is not None:
            body["dag_run_id"] = run_id
        if note is not None:
            body["note"] = note
        return self._dag_run(self._api("POST", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", json=body))

    def get_dag_run(self, dag_id: str, run_id: str) -> DagRun:
        """``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}``."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        return self._dag_run(self._api("GET", path))

    def list_dag_runs(self, dag_id: str, **filters: str | list[str]) -> list[DagRun]:
        """Every run of ``dag_id`` matching the API's query ``filters`` (``run_type``, ``logical_date_gte``...)."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns"
        return [self._dag_run(item) for item in self._pages(path, "dag_runs", {**filters, "order_by": "id"})]

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """Every task instance of one run, mapped ones included."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return [
            TaskInstance(
                task_id=str(item["task_id"]),
                map_index=int(item.get("map_index", -1)),
                state=item.get("state"),
                try_number=int(item.get("try_number") or 0),
                rendered_map_index=item.get("rendered_map_index"),
            )
            for item in self._pages(path, "task_instances", {})
        ]

    def _pages(self, path: str, key: str, params: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        offset = 0
        while True:
            answer = self._api("GET", path, params={**params, "limit": _PAGE, "offset": offset})
            items = answer.get(key, []) if isinstance(answer, dict) else []
            yield from items
            offset += len(items)
            if not items or offset >= int(answer.get("total_entries", 0)):
                return

    def _dag_run(self, answer: Any) -> DagRun:
        try:
            return DagRun(
                dag_id=str(answer["dag_id"]),
                run_id=str(answer["dag_run_id"]),
                state=str(answer["state"]),
                run_type=str(answer.get("run_type", "")),
                logical_date=answer.get("logical_date"),
                start_date=answer.get("start_date"),
                end_date=answer.get("end_date"),
                conf=answer.get("conf") or {},
            )
        except (KeyError, TypeError) as exc:
            raise AirflowAPIError(f"{self.display_url} answered a DAG run without {exc}") from exc

    # --- backfills ------------------------------------------------------------------------------------------

    def create_backfill(
        self,
        dag_id: str,
        from_date: datetime,
        to_date: datetime,
        *,
        conf: Mapping[str, Any] | None = None,
        reprocess_behavior: ReprocessBehavior = "failed",
        max_active_runs: int = 4,
    ) -> Backfill:
        """``POST /api/v2/backfills``: runs of ``dag_id`` for every logical date in ``[from_date, to_date]``.

        :raises AirflowConflictError: a backfill of ``dag_id`` is already running.
        :raises AirflowAPIError: naming the HTTP status and Airflow's reason (e.g. an unknown DAG, a bad conf).
        """
        from_date, to_date = check_range(from_date, to_date)
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "run_backwards": False,
            "dag_run_conf": dict(conf or {}),
            "reprocess_behavior": reprocess_behavior,
            "max_active_runs": max_active_runs,
        }
        return self._backfill(self._api("POST", "/api/v2/backfills", json=body))

    def get_backfill(self, backfill_id: int) -> Backfill:
        """``GET /api/v2/backfills/{backfill_id}``."""
        return self._backfill(self._api("GET", f"/api/v2/backfills/{int(backfill_id)}"))

    def backfill_runs(self, backfill: Backfill) -> list[DagRun]:
        """The runs of ``backfill``: the ``backfill`` runs of its DAG whose logical date lies in its range.

        The public API does not filter runs by backfill id; at most one backfill of a DAG is active at a time and
        each one takes over the runs of its range it re-runs, so this is the same set.
        """
        return self.list_dag_runs(
            backfill.dag_id,
            run_type=["backfill"],
            logical_date_gte=backfill.from_date,
            logical_date_lte=backfill.to_date,
        )

    def _backfill(self, answer: Any) -> Backfill:
        try:
            return Backfill(
                id=int(answer["id"]),
                dag_id=str(answer["dag_id"]),
                from_date=str(answer["from_date"]),
                to_date=str(answer["to_date"]),
                reprocess_behavior=str(answer.get("reprocess_behavior", "")),
                is_paused=bool(answer.get("is_paused")),
                completed_at=answer.get("completed_at"),
                dag_run_conf=answer.get("dag_run_conf") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AirflowAPIError(f"{self.display_url}/api/v2/backfills answered a backfill without {exc}") from exc

    # --- following ------------------------------------------------------------------------------------------

    def wait_for_dag_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float | None,
        poll: float = 2.0,
        progress: ProgressCallback | None = None,
    ) -> DagRun:
        """Poll one run until it has finished; ``progress`` hears of every change of its task states.

        :param timeout: seconds to wait at most (``None``: no limit).
        :raises AirflowWaitTimeoutError: the run had not finished after ``timeout`` seconds (it goes on).
        """
        subject = f"{dag_id} run {run_id}"
        began = time.monotonic()
        last: tuple[str, tuple[tuple[str, int], ...]] | None = None
        while True:
            run = self.get_dag_run(dag_id, run_id)
            counts = Counter(ti.state or "no status" for ti in self.task_instances(dag_id, run_id))
            now = (run.state, tuple(sorted(counts.items())))
            elapsed = time.monotonic() - began
            if progress is not None and now != last:
                progress(WaitProgress(subject, run.state, dict(counts), elapsed))
            last = now
            if run.finished:
                return run
            self._sleep_or_timeout(subject, run.state, began, timeout, poll)

    def wait_for_backfill(
        self,
        backfill_id: int,
        *,
        timeout: float | None,
        poll: float = 2.0,
        progress: ProgressCallback | None = None,
    ) -> tuple[Backfill, list[DagRun]]:
        """Poll a backfill until Airflow marks it completed; returns it with its runs in their final states.

        :param timeout: seconds to wait at most (``None``: no limit).
        :raises AirflowWaitTimeoutError: the backfill had not completed after ``timeout`` seconds (it goes on).
        """
        began = time.monotonic()
        last: tuple[str, tuple[tuple[str, int], ...]] | None = None
        while True:
            backfill = self.get_backfill(backfill_id)
            subject = f"backfill {backfill.id} of {backfill.dag_id}"
            runs = self.backfill_runs(backfill)
            # Airflow completes a backfill once its runs finished; a run that still shows another state at that
            # moment is reported as it is.
            state = "completed" if backfill.completed else ("paused" if backfill.is_paused else "running")
            counts = Counter(run.state for run in runs)
            now = (state, tuple(sorted(counts.items())))
            elapsed = time.monotonic() - began
            if progress is not None and now != last:
                progress(WaitProgress(subject, state, dict(counts), elapsed))
            last = now
            if backfill.completed:
                return backfill, runs
            self._sleep_or_timeout(subject, state, began, timeout, poll)

    @staticmethod
    def _sleep_or_timeout(subject: str, state: str, began: float, timeout: float | None, poll: float) -> None:
        elapsed = time.monotonic() - began
        if timeout is not None and elapsed >= timeout:
            raise AirflowWaitTimeoutError(
                f"{subject} is still {state} after {elapsed:.0f}s; it goes on in Airflow (nothing was cancelled)"
            )
        time.sleep(poll if timeout is None else max(0.0, min(poll, timeout - elapsed)))

    def close(self) -> None:
        self._session.close()
