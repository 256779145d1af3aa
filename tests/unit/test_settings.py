"""Settings come from the environment, with the names the trading systems already use."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketkeeper.health import redact_url
from marketkeeper.settings import Settings, normalize_database_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql+asyncpg://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("sqlite+aiosqlite:///x.db", "sqlite:///x.db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_spellings_map_to_the_sync_driver(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_nothing_configured_means_embedded_sqlite_ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MARKETKEEPER_HOME", str(tmp_path / "home"))
    settings = Settings()
    assert settings.uses_embedded_ledger
    assert settings.ledger_url == f"sqlite:///{tmp_path / 'home' / 'ledger.sqlite'}"
    assert settings.influxdb_url is None
    assert settings.redis_url is None


def test_environment_names_from_the_reference_designs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://trader:s3cret@db:5432/trading")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache:6379/1")
    monkeypatch.setenv("INFLUXDB_URL", "http://tsdb:8086")
    monkeypatch.setenv("INFLUXDB_TOKEN", "tok")
    monkeypatch.setenv("INFLUXDB_BUCKET", "market-data")
    settings = Settings()
    assert settings.ledger_url == "postgresql+psycopg://trader:s3cret@db:5432/trading"
    assert settings.influxdb_bucket == "market-data"
    # Secrets are not shown by repr, so a logged settings object leaks nothing.
    assert "hunter2" not in repr(settings)
    assert "tok'" not in repr(settings)


def test_blank_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("INFLUXDB_URL", "")
    settings = Settings()
    assert settings.uses_embedded_ledger
    assert settings.redis_url is None
    assert settings.influxdb_url is None


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("INFLUXDB_URL=http://from-dotenv:8086\n")
    assert Settings().influxdb_url == "http://from-dotenv:8086"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/1", "redis://:***@cache:6379/1"),
        ("http://admin:pw@tsdb:8086", "http://admin:***@tsdb:8086"),
        ("http://tsdb:8086", "http://tsdb:8086"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown
