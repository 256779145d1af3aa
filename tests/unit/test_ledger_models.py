"""The ledger schema, its column types and engine helpers, on embedded SQLite (no server needed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from marketkeeper.errors import ConfigurationError
from marketkeeper.ledger import (
    Base,
    Candle,
    ExactNumeric,
    GapStatus,
    Market,
    MLModel,
    NaiveDatetimeError,
    NumericOverflowError,
    UTCDateTime,
    create_ledger_engine,
    migrate,
    session_scope,
)

# Every field of the trading system's database module (and the storage layer's system events).
SEED_FIELDS = {
    "users": "id username email password_hash is_active is_verified created_at updated_at",
    "bot_instances": "id name user_id strategy_type exchange status config created_at updated_at last_active",
    "trades": "id bot_id symbol side order_type quantity price executed_price fee pnl status timestamp",
    "positions": "id bot_id symbol side quantity entry_price current_price unrealized_pnl realized_pnl "
    "created_at updated_at closed_at",
    "balance_snapshots": "id user_id exchange currency total_balance available_balance locked_balance timestamp",
    "strategy_configs": "id name strategy_type config_data is_active created_at updated_at",
    "ml_models": "id name model_type version file_path metadata performance_metrics is_active created_at updated_at",
    "performance_metrics": "id bot_id metric_date total_trades winning_trades losing_trades total_pnl "
    "win_rate sharpe_ratio max_drawdown created_at",
    "alerts": "id user_id alert_type severity title message metadata is_read timestamp",
    "audit_logs": "id user_id action resource details ip_address user_agent timestamp",
    "system_events": "id event_type severity message symbol trade_id details timestamp",
}


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_ledger_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _candle(open_time: datetime, close: Decimal | str = "1") -> Candle:
    return Candle(
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="1m",
        open_time=open_time,
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(close),
        volume=Decimal(1),
    )


@pytest.mark.parametrize("table", sorted(SEED_FIELDS))
def test_seed_tables_have_every_seed_field(table: str) -> None:
    assert set(SEED_FIELDS[table].split()) <= set(Base.metadata.tables[table].c.keys())


def test_seed_tables_have_uuid_keys_and_metadata_attribute_is_renamed() -> None:
    for table in SEED_FIELDS:
        assert isinstance(Base.metadata.tables[table].c.id.type, sa.Uuid), table
    assert MLModel.__table__.c.metadata is MLModel.extra_metadata.property.columns[0]


def test_every_timestamp_and_money_column_uses_the_portable_types() -> None:
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            where = f"{table.name}.{column.name}"
            assert not isinstance(column.type, sa.DateTime), f"{where}: naive on SQLite; use UTCDateTime"
            # Plain NUMERIC loses digits on SQLite; only the statistics ratios and the candle values (market
            # data kept as the exact doubles the sources deliver and InfluxDB holds) are floats.
            is_float = isinstance(column.type, sa.Double) and (
                column.name in {"win_rate", "sharpe_ratio", "max_drawdown"}
                or (table.name == "candles" and column.name in CANDLE_VALUES)
            )
            assert not isinstance(column.type, sa.Numeric) or is_float, f"{where}: use ExactNumeric"
    assert isinstance(Candle.__table__.c.open_time.type, UTCDateTime)
    assert isinstance(Candle.__table__.c.close.type, sa.Double)


CANDLE_VALUES = {"open", "high", "low", "close", "volume", "quote_volume"}


def test_constraints_are_named_by_the_convention() -> None:
    candles = Base.metadata.tables["candles"]
    gaps = Base.metadata.tables["candle_gaps"]

    assert candles.primary_key.name == "pk_candles"
    assert [c.name for c in candles.primary_key.columns] == ["exchange", "symbol", "timeframe", "open_time"]
    names = {c.name for c in gaps.constraints}
    assert {
        "uq_candle_gaps_market_id_timeframe_start_end",
        "fk_candle_gaps_market_id_markets",
        "ck_candle_gaps_gap_status",
    } <= names
    for table in Base.metadata.sorted_tables:
        for constraint in table.constraints:
            assert constraint.name, f"unnamed constraint on {table.name}"
            assert len(str(constraint.name)) <= 63, f"{constraint.name} exceeds PostgreSQL's identifier limit"


def test_utc_datetime_refuses_naive_input(engine: Engine) -> None:
    with pytest.raises(sa.exc.StatementError) as raised, session_scope(engine) as session:
        session.add(_candle(datetime(2024, 1, 1)))  # noqa: DTZ001 - the naive value under test
    assert isinstance(raised.value.orig, NaiveDatetimeError)
    assert "2024-01-01T00:00:00 has no timezone" in str(raised.value)


def test_utc_datetime_stores_the_instant_and_returns_aware_utc(engine: Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    with session_scope(engine) as session:
        session.add(_candle(datetime(2024, 1, 1, 2, 0, tzinfo=plus_two)))

    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT open_time FROM candles").scalar_one()
    with session_scope(engine) as session:
        loaded = session.scalars(sa.select(Candle)).one()

    assert raw.startswith("2024-01-01 00:00:00")  # stored as UTC, not as the +02:00 wall clock
    assert loaded.open_time == datetime(2024, 1, 1, tzinfo=UTC)
    assert loaded.open_time.tzinfo is UTC


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_utc_datetime_result_is_utc_whatever_the_driver_returns(dialect: sa.engine.Dialect) -> None:
    column_type = UTCDateTime()
    naive = datetime(2024, 1, 1, 12, 0)  # noqa: DTZ001 - what SQLite's driver hands back
    aware = datetime(2024, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    assert column_type.process_result_value(naive, dialect) == datetime(2024, 1, 1, 12, tzinfo=UTC)
    result = column_type.process_result_value(aware, dialect)
    assert result is not None
    assert result.tzinfo is UTC
    assert result == aware


def test_exact_numeric_keeps_every_digit_on_sqlite(engine: Engine) -> None:
    exact = "12345678.123456789012345678"
    probe = sa.Table("exact_probe", sa.MetaData(), sa.Column("value", ExactNumeric(), primary_key=True))
    probe.create(engine)
    with engine.begin() as conn:
        conn.execute(probe.insert(), {"value": Decimal(exact)})
        loaded = conn.execute(sa.select(probe.c.value)).scalar_one()
    assert loaded == Decimal(exact)
    assert isinstance(loaded, Decimal)


def test_exact_numeric_rounds_to_18_places_half_away_from_zero_like_postgresql() -> None:
    column_type = ExactNumeric()
    dialect = sqlite.dialect()

    assert column_type.process_bind_param(Decimal("0.0000000000000000005"), dialect) == "0.000000000000000001"
    assert column_type.process_bind_param(Decimal("-0.0000000000000000005"), dialect) == "-0.000000000000000001"
    assert column_type.process_bind_param(Decimal("1E+3"), dialect) == "1000.000000000000000000"
    assert column_type.process_bind_param(7, dialect) == "7.000000000000000000"


@pytest.mark.parametrize("value", [Decimal("1E+20"), Decimal("NaN"), Decimal("Infinity")])
def test_exact_numeric_refuses_what_numeric_38_18_cannot_hold(value: Decimal) -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        with pytest.raises(NumericOverflowError, match=r"NUMERIC\(38, 18\)"):
            ExactNumeric().process_bind_param(value, dialect)


def test_status_columns_load_as_enums_and_refuse_unknown_values(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(Market(exchange="binance", symbol="BTC/USDT", base_timeframe="1m"))
    with engine.begin() as conn:
        market_id = conn.execute(sa.select(Market.id)).scalar_one()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    gap = {"market_id": market_id, "timeframe": "1m", "start": start, "end": start + timedelta(minutes=2)}

    with pytest.raises(sa.exc.StatementError), engine.begin() as conn:
        conn.execute(sa.insert(Base.metadata.tables["candle_gaps"]).values(**gap, missing_count=2, status="lost"))

    with engine.begin() as conn:
        conn.execute(sa.insert(Base.metadata.tables["candle_gaps"]).values(**gap, missing_count=2))
        assert conn.execute(sa.text("SELECT status FROM candle_gaps")).scalar_one() == "open"
    with session_scope(engine) as session:
        market = session.get_one(Market, market_id)
        assert market.gaps[0].status is GapStatus.OPEN
        assert market.created_at.tzinfo is UTC


def test_sqlite_engine_makes_its_folder_and_enforces_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ledger.sqlite"
    engine = create_ledger_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert path.is_file()
    finally:
        engine.dispose()


def test_postgresql_urls_are_mapped_to_psycopg_and_pre_pinged() -> None:
    engine = create_ledger_engine("postgresql+asyncpg://u:p@db.invalid:5432/ledger")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping
    finally:
        engine.dispose()


def test_a_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a valid URL"):
        create_ledger_engine("not a url")


def test_session_scope_rolls_back_when_the_block_raises(engine: Engine) -> None:
    with pytest.raises(KeyError), session_scope(engine) as session:
        session.add(Market(exchange="binance", symbol="BTC/USDT", base_timeframe="1m"))
        session.flush()
        raise KeyError("boom")

    with session_scope(engine) as session:
        assert session.scalars(sa.select(Market)).all() == []


def test_one_dated_initial_revision_is_the_head() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    revisions = list(scripts.walk_revisions())

    assert len(scripts.get_heads()) == 1
    assert [r.down_revision for r in revisions if r.down_revision is None] == [None]
    for revision in revisions:
        assert revision.path is not None
        assert re.fullmatch(r"\d{4}_\d{2}_\d{2}_\w+\.py", Path(revision.path).name), revision.path


def test_alembic_config_keeps_percent_encoded_passwords_intact() -> None:
    url = "postgresql+psycopg://u:p%40ss@127.0.0.1:5432/ledger"

    config = migrate.alembic_config(url)

    # Migrations run without the statement timeout (a long ALTER is not a hung query); the password survives.
    assert config.get_main_option("sqlalchemy.url") == url + "?statement_timeout=0"
    assert Path(str(config.get_main_option("script_location"))) == migrate.migrations_dir()


def test_migrations_folder_is_found_from_the_installed_package() -> None:
    folder = migrate.migrations_dir()

    assert (folder / "env.py").is_file()
    assert (folder / "versions").is_dir()
