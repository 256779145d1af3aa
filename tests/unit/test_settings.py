"""Settings come from the environment, with the names the trading systems already use."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketkeeper.settings import Settings, normalize_database_url, redact, redact_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    names = ("DATABASE_URL", "REDIS_URL", "INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_BUCKET", "INFLUXDB_PASSWORD")
    for name in (*names, "MARKETKEEPER_DB_STATEMENT_TIMEOUT", "MARKETKEEPER_DB_CONNECT_TIMEOUT"):
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
        ("postgresql+psycopg://u:p%40ss@db:5432/mk", "postgresql+psycopg://u:***@db:5432/mk"),
        ("postgresql://db/mk?password=hunter2&sslmode=require", "postgresql://db/mk?password=***&sslmode=require"),
        ("http://tsdb:8086/query?u=admin&p=hunter2", "http://tsdb:8086/query?u=admin&p=***"),
        ("sqlite:////var/lib/ledger.sqlite", "sqlite:////var/lib/ledger.sqlite"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_repr_and_str_never_show_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://trader:Pg-s3cret@db:5432/trading")
    monkeypatch.setenv("INFLUXDB_URL", "http://admin:Influx-s3cret@tsdb:8086")
    monkeypatch.setenv("INFLUXDB_PASSWORD", "Influx-pw2")
    settings = Settings()
    for text in (repr(settings), str(settings), f"{settings}"):
        for secret in ("Pg-s3cret", "Influx-s3cret", "Influx-pw2"):
            assert secret not in text
        assert "trader:***@db" in text
    # What the engines need stays a plain URL; what is shown is redacted.
    assert settings.ledger_url == "postgresql+psycopg://trader:Pg-s3cret@db:5432/trading"
    assert settings.ledger_url_redacted == "postgresql+psycopg://trader:***@db:5432/trading"
    assert settings.influxdb_url_redacted == "http://admin:***@tsdb:8086"
    assert set(settings.secrets) == {"Pg-s3cret", "Influx-s3cret", "Influx-pw2"}


def test_redact_masks_every_secret_in_free_text() -> None:
    text = 'FATAL: password "hunter2" rejected; token hunter2-long and none'
    assert redact(text, ["hunter2", "hunter2-long", None, ""]) == 'FATAL: password "***" rejected; token *** and none'


def test_ledger_timeouts_have_bounded_defaults_and_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.marketkeeper_db_connect_timeout, defaults.marketkeeper_db_statement_timeout) == (10.0, 300.0)
    assert defaults.marketkeeper_db_lock_timeout == 30.0
    assert defaults.marketkeeper_db_keepalives_idle == 30
    monkeypatch.setenv("MARKETKEEPER_DB_STATEMENT_TIMEOUT", "12.5")
    monkeypatch.setenv("MARKETKEEPER_DB_CONNECT_TIMEOUT", "3")
    settings = Settings()
    assert (settings.marketkeeper_db_statement_timeout, settings.marketkeeper_db_connect_timeout) == (12.5, 3.0)
    monkeypatch.setenv("MARKETKEEPER_DB_CONNECT_TIMEOUT", "-1")
    with pytest.raises(ValueError, match="marketkeeper_db_connect_timeout"):
        Settings()
