"""Balance accounts read from Airflow Connections, the accounts list from the Variable, and the rollup days."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

# Airflow writes under AIRFLOW_HOME as soon as it is imported: use a throwaway directory, never ~/airflow.
os.environ.setdefault("MARKETKEEPER_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="marketkeeper-airflow-"))
os.environ["AIRFLOW_HOME"] = os.environ["MARKETKEEPER_TEST_AIRFLOW_HOME"]

from marketkeeper.airflow.accounts import ACCOUNTS_VARIABLE, AccountHook, declared_accounts, parse_account_ids
from marketkeeper.airflow.rollups import days_for
from marketkeeper.balances import AccountKind
from marketkeeper.errors import ConfigurationError

pytestmark = pytest.mark.airflow


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_account_hook_reads_an_exchange_account(monkeypatch: pytest.MonkeyPatch) -> None:
    user = uuid.uuid4()
    set_conn(
        monkeypatch,
        "mk_acct",
        conn_type="marketkeeper_account",
        login="api-key",
        password="api-secret",
        extra={"kind": "exchange", "exchange": "kraken", "user_id": str(user)},
    )

    account = AccountHook(account_conn_id="mk_acct").get_conn()

    assert (account.name, account.kind, account.exchange, account.user_id) == (
        "mk_acct",
        AccountKind.EXCHANGE,
        "kraken",
        user,
    )
    assert (account.api_key, account.secret) == ("api-key", "api-secret")


def test_account_hook_refuses_a_connection_of_another_type(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "mk_acct", conn_type="postgres", host="db")

    with pytest.raises(ConfigurationError, match="expected 'marketkeeper_account'"):
        AccountHook(account_conn_id="mk_acct").get_conn()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        ("", []),
        ('["a", "b", "a"]', ["a", "b"]),
        ("a, b\nc,", ["a", "b", "c"]),
        (["x", " ", "y"], ["x", "y"]),
    ],
)
def test_parse_account_ids(value: Any, expected: list[str]) -> None:
    assert parse_account_ids(value) == expected


def test_parse_account_ids_refuses_json_that_is_not_a_list_of_strings() -> None:
    with pytest.raises(ConfigurationError):
        parse_account_ids("[1, 2]")
    with pytest.raises(ConfigurationError, match="JSON list"):
        parse_account_ids("[oops")


def test_declared_accounts_come_from_the_param_else_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(f"AIRFLOW_VAR_{ACCOUNTS_VARIABLE.upper()}", raising=False)
    assert declared_accounts() == []

    monkeypatch.setenv(f"AIRFLOW_VAR_{ACCOUNTS_VARIABLE.upper()}", '["binance_main", "paper_grid"]')
    assert declared_accounts() == ["binance_main", "paper_grid"]
    assert declared_accounts(["only_this"]) == ["only_this"]


def test_rollup_days_from_the_data_interval_or_the_params() -> None:
    interval = {"data_interval_start": datetime(2026, 11, 22, 0, 30, tzinfo=UTC)}
    no_dates = {"start_date": None, "end_date": None}

    assert days_for({"params": no_dates, **interval}) == (date(2026, 11, 22), date(2026, 11, 22))
    assert days_for({"params": {"start_date": "2026-01-01", "end_date": "2026-01-31"}, **interval}) == (
        date(2026, 1, 1),
        date(2026, 1, 31),
    )
    assert days_for({"params": {"start_date": "2026-01-01", "end_date": None}}) == (date(2026, 1, 1),) * 2
    with pytest.raises(ConfigurationError, match="needs start_date"):
        days_for({"params": {"start_date": None, "end_date": "2026-01-01"}, **interval})
    with pytest.raises(ConfigurationError, match="YYYY-MM-DD"):
        days_for({"params": {"start_date": "January", "end_date": None}})
    with pytest.raises(ConfigurationError, match="no data interval"):
        days_for({"params": no_dates, "data_interval_start": None})
