"""``marketkeeper gaps`` and ``marketkeeper backfill`` run as a user runs them, against real ledgers.

``--via airflow`` is tested against a real Airflow in ``test_airflow_remote.py`` (the service the command calls);
the client's request building in ``tests/unit/test_airflow_api.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.integration

SERIES = ["--exchange", "clitest", "--symbol", "BTC/USDT", "--timeframe", "1m"]


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {"MARKETKEEPER_HOME": str(tmp_path / "home")}
    return {"DATABASE_URL": request.getfixturevalue("fresh_pg_url"), "MARKETKEEPER_HOME": str(tmp_path / "home")}


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    result = run_cli(*args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_detect_list_backfill_and_list_again(env: dict[str, str], tmp_path: Path) -> None:
    cli(env, tmp_path, "db", "upgrade")
    for start, end in (("2024-05-06T00:00Z", "2024-05-06T01:00Z"), ("2024-05-06T02:00Z", "2024-05-06T03:00Z")):
        cli(env, tmp_path, "ingest", *SERIES, "--start", start, "--end", end, "--source", "synthetic:3")
    window = ["--start", "2024-05-06T00:00Z", "--end", "2024-05-06T03:00Z"]

    detected = json.loads(cli(env, tmp_path, "gaps", "detect", *SERIES, *window, "--format", "json"))
    assert detected[0]["gaps"] == 1 and detected[0]["missing"] == 60
    assert detected[0]["holes"] == [
        {"start": "2024-05-06T01:00:00+00:00", "end": "2024-05-06T02:00:00+00:00", "missing": 60}
    ]

    listed = json.loads(cli(env, tmp_path, "gaps", "--exchange", "clitest", "--format", "json"))
    assert [(g["start"], g["missing"], g["status"]) for g in listed] == [("2024-05-06T01:00:00+00:00", 60, "open")]
    assert "60 missing" in cli(env, tmp_path, "gaps", "--status", "open")

    summary = cli(env, tmp_path, "backfill", *SERIES, *window, "--source", "synthetic:3")
    assert "1 gap(s) attempted: 1 filled" in summary and "60 written" in summary
    assert "0 candle(s) still missing" in summary

    filled = json.loads(cli(env, tmp_path, "gaps", "--status", "filled", "--format", "json"))
    assert len(filled) == 1 and filled[0]["resolved_at"] is not None
    assert json.loads(cli(env, tmp_path, "gaps", "--status", "open", "--format", "json")) == []

    forced = cli(env, tmp_path, "backfill", *SERIES, *window, "--source", "synthetic:3", "--force")
    assert "forced" in forced and "180 written" in forced


def test_bad_options_are_named(tmp_path: Path) -> None:
    env = {"MARKETKEEPER_HOME": str(tmp_path / "home")}
    bad = run_cli("gaps", "--status", "closed", env=env, cwd=tmp_path)  # an enum choice: typer's usage error
    assert bad.returncode == 2 and "'--status'" in bad.stderr and "'closed'" in bad.stderr
    assert "Traceback" not in bad.stderr
    backwards = run_cli("backfill", *SERIES, "--start", "2024-02-01", "--end", "2024-01-01", env=env, cwd=tmp_path)
    assert backwards.returncode == 1 and "must be before --end" in backwards.stderr
