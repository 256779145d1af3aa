"""The ledger migrations on the real PostgreSQL and on a SQLite file: schema, round trips, constraints."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from marketkeeper.ledger import (
    Base,
    BotInstance,
    Candle,
    CandleGap,
    GapStatus,
    Market,
    OrderType,
    PerformanceMetrics,
    Trade,
    TradeSide,
    TradeStatus,
    User,
    create_ledger_engine,
    migrate,
    session_factory,
    session_scope,
)

pytestmark = pytest.mark.integration

EXACT = Decimal("12345678.123456789012345678")
MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty ledger on each backend: a fresh PostgreSQL database, or a SQLite file in a new folder."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("fresh_pg_url")
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'nested' / 'ledger.sqlite'}"


@pytest.fixture
def migrated(ledger_url: str) -> Iterator[Engine]:
    """An engine on a ledger upgraded to head."""
    migrate.upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _head() -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def _user_and_bot(session: Session) -> BotInstance:
    user = User(username=f"u{uuid.uuid4().hex[:8]}", email=f"{uuid.uuid4().hex[:8]}@example.com", password_hash="x")
    bot = BotInstance(name="grid-1", user=user, strategy_type="static", exchange="binance")
    session.add(bot)
    session.flush()
    return bot


def _candle(open_time: datetime, close: float = 1.5) -> Candle:
    return Candle(
        exchange="binance",
        symbol="BTC/USDT",
        timeframe="1m",
        open_time=open_time,
        open=1.0,
        high=2.0,
        low=0.5,
        close=close,
        volume=10.0,
    )


def test_upgrade_head_creates_every_model_table(ledger_url: str) -> None:
    assert migrate.current(ledger_url) is None

    migrate.upgrade(ledger_url)

    engine = create_ledger_engine(ledger_url)
    try:
        assert _tables(engine) == MODEL_TABLES | {"alembic_version"}
    finally:
        engine.dispose()
    assert migrate.current(ledger_url) == _head()


def test_upgrade_twice_is_a_no_op(migrated: Engine, ledger_url: str) -> None:
    migrate.upgrade(ledger_url)

    assert migrate.current(ledger_url) == _head()


def test_models_and_migrated_schema_do_not_differ(migrated: Engine) -> None:
    with migrated.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)

    assert diff == []


def test_constraint_names_follow_the_naming_convention(migrated: Engine) -> None:
    """Later migrations drop and alter constraints by name: the names must be the metadata's everywhere."""
    inspector = sa.inspect(migrated)
    for table in Base.metadata.sorted_tables:
        expected_uniques = {c.name for c in table.constraints if isinstance(c, sa.UniqueConstraint)}
        expected_checks = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        expected_fks = {c.name for c in table.foreign_key_constraints}
        expected_indexes = {i.name for i in table.indexes}

        assert {c["name"] for c in inspector.get_unique_constraints(table.name)} == expected_uniques, table.name
        assert {c["name"] for c in inspector.get_check_constraints(table.name)} == expected_checks, table.name
        assert {c["name"] for c in inspector.get_foreign_keys(table.name)} == expected_fks, table.name
        # PostgreSQL also lists the index behind each unique constraint; those are checked above.
        indexes = {i["name"] for i in inspector.get_indexes(table.name) if not i.get("duplicates_constraint")}
        assert indexes == expected_indexes, table.name


def test_downgrade_base_drops_everything_and_upgrade_rebuilds_it(migrated: Engine, ledger_url: str) -> None:
    with session_scope(migrated) as session:
        session.add(_candle(datetime(2024, 1, 1, tzinfo=UTC)))

    migrate.downgrade(ledger_url, "base")

    assert _tables(migrated) <= {"alembic_version"}
    assert migrate.current(ledger_url) is None

    migrate.upgrade(ledger_url)

    assert _tables(migrated) == MODEL_TABLES | {"alembic_version"}
    with session_scope(migrated) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Candle)) == 0


def test_0003_turns_stored_candle_decimals_into_the_same_doubles_and_back(ledger_url: str) -> None:
    """Candles the NUMERIC store wrote (the shortest repr of each double) come back as those doubles."""
    migrate.upgrade(ledger_url, "0002")
    values = {"open": "30000.12", "high": "0.1", "low": "1E-8", "close": "12345678.12345678", "volume": "7"}
    engine = create_ledger_engine(ledger_url)
    insert = sa.text(
        "INSERT INTO candles (exchange, symbol, timeframe, open_time, open, high, low, close, volume,"
        " quote_volume, ingested_at) VALUES ('binance', 'BTC/USDT', '1m', :t, :open, :high, :low, :close,"
        " :volume, NULL, :t)"
    )
    select = sa.text("SELECT open, high, low, close, volume, quote_volume FROM candles")
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            # Bound as text, as the old store wrote them on SQLite; PostgreSQL casts text to numeric.
            conn.execute(
                insert, {"t": moment if engine.dialect.name == "postgresql" else "2024-01-01 00:00:00", **values}
            )

        migrate.upgrade(ledger_url)

        with engine.connect() as conn:
            row = conn.execute(select).one()
        assert list(row) == [30000.12, 0.1, 1e-8, 12345678.12345678, 7.0, None]
        assert all(type(v) is float for v in row[:5])

        migrate.downgrade(ledger_url, "0002")

        with engine.connect() as conn:
            back = conn.execute(select).one()
        if engine.dialect.name == "postgresql":
            assert [Decimal(str(v)) for v in back[:5]] == [Decimal(v) for v in values.values()]
        else:
            # SQLite's CAST(REAL AS TEXT) keeps 15 significant digits: the downgrade is that lossy there.
            assert [float(v) for v in back[:5]] == pytest.approx([float(v) for v in values.values()], rel=1e-14)
        assert back[5] is None
    finally:
        engine.dispose()


def test_unknown_revision_is_a_migration_error(ledger_url: str) -> None:
    with pytest.raises(migrate.MigrationError, match="no_such_revision"):
        migrate.upgrade(ledger_url, "no_such_revision")


def test_second_candle_for_the_same_open_time_is_refused(migrated: Engine) -> None:
    open_time = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    with session_scope(migrated) as session:
        session.add(_candle(open_time))

    with pytest.raises(sa.exc.IntegrityError), session_scope(migrated) as session:
        session.add(_candle(open_time, close=2.0))

    with session_scope(migrated) as session:
        stored = session.scalars(sa.select(Candle)).all()
    assert [c.close for c in stored] == [1.5]


def test_second_performance_row_for_the_same_bot_and_day_is_refused(migrated: Engine) -> None:
    with session_scope(migrated) as session:
        bot_id = _user_and_bot(session).id
        session.add(PerformanceMetrics(bot_id=bot_id, metric_date=date(2024, 3, 1)))

    with pytest.raises(sa.exc.IntegrityError), session_scope(migrated) as session:
        session.add(PerformanceMetrics(bot_id=bot_id, metric_date=date(2024, 3, 1), total_trades=3))

    with session_scope(migrated) as session:
        session.add(PerformanceMetrics(bot_id=bot_id, metric_date=date(2024, 3, 2)))


def test_timestamps_come_back_as_the_same_instant_in_utc(migrated: Engine) -> None:
    tokyo = timezone(timedelta(hours=9))
    open_time = datetime(2024, 3, 1, 9, 0, 0, 123456, tzinfo=tokyo)
    with session_scope(migrated) as session:
        session.add(_candle(open_time))

    with session_scope(migrated) as session:
        loaded = session.scalars(sa.select(Candle)).one()
        by_utc_key = session.get(Candle, ("binance", "BTC/USDT", "1m", datetime(2024, 3, 1, tzinfo=UTC)))

    assert loaded.open_time == open_time
    assert loaded.open_time.utcoffset() == timedelta(0)
    assert loaded.open_time == datetime(2024, 3, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert loaded.ingested_at.tzinfo is not None
    assert by_utc_key is None  # microseconds matter: a different instant is a different candle


def test_range_reads_compare_instants_not_wall_clocks(migrated: Engine) -> None:
    base = datetime(2024, 3, 1, tzinfo=UTC)
    with session_scope(migrated) as session:
        session.add_all(_candle(base + timedelta(minutes=i)) for i in range(5))

    new_york = timezone(timedelta(hours=-5))
    start = (base + timedelta(minutes=1)).astimezone(new_york)
    end = (base + timedelta(minutes=4)).astimezone(new_york)
    with session_scope(migrated) as session:
        rows = session.scalars(
            sa.select(Candle.open_time)
            .where(Candle.open_time >= start, Candle.open_time < end)
            .order_by(Candle.open_time)
        ).all()

    assert rows == [base + timedelta(minutes=i) for i in (1, 2, 3)]


def test_money_round_trips_exactly(migrated: Engine) -> None:
    with session_scope(migrated) as session:
        bot = _user_and_bot(session)
        trade = Trade(
            bot_id=bot.id,
            symbol="BTC/USDT",
            side=TradeSide.BUY,
            order_type=OrderType.LIMIT,
            quantity=Decimal("0.000000000000000001"),
            price=EXACT,
            executed_price=Decimal("99999999999999999999.999999999999999999"),
            pnl=-EXACT,
            status=TradeStatus.FILLED,
        )
        session.add(trade)

    with session_scope(migrated) as session:
        loaded = session.get_one(Trade, trade.id)

    assert loaded.price == EXACT
    assert loaded.pnl == -EXACT
    assert loaded.quantity == Decimal("1E-18")
    assert loaded.executed_price == Decimal("99999999999999999999.999999999999999999")
    assert loaded.fee == 0
    assert loaded.side is TradeSide.BUY
    assert loaded.timestamp.tzinfo is not None


def test_a_bot_with_trades_cannot_be_deleted_but_a_market_takes_its_gaps(migrated: Engine) -> None:
    """ON DELETE as designed, on SQLite too (its foreign keys are off unless the engine turns them on)."""
    with session_scope(migrated) as session:
        bot = _user_and_bot(session)
        session.add(
            Trade(
                bot_id=bot.id,
                symbol="BTC/USDT",
                side=TradeSide.SELL,
                order_type=OrderType.MARKET,
                quantity=Decimal(1),
                price=Decimal(1),
                executed_price=Decimal(1),
                status=TradeStatus.FILLED,
            )
        )
        bot_id = bot.id
        market = Market(exchange="binance", symbol="BTC/USDT", base_timeframe="1m")
        start = datetime(2024, 1, 1, tzinfo=UTC)
        market.gaps.append(CandleGap(timeframe="1m", start=start, end=start + timedelta(minutes=3), missing_count=3))
        session.add(market)

    with pytest.raises(sa.exc.IntegrityError), migrated.begin() as conn:
        conn.execute(sa.delete(BotInstance).where(BotInstance.id == bot_id))

    with migrated.begin() as conn:
        conn.execute(sa.delete(Market))
    with session_scope(migrated) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CandleGap)) == 0
        assert session.get(BotInstance, bot_id) is not None


def test_a_status_outside_the_vocabulary_is_refused_by_the_database(migrated: Engine) -> None:
    with migrated.begin() as conn:
        market_id = conn.execute(
            sa.insert(Market).values(exchange="binance", symbol="ETH/USDT", base_timeframe="1m").returning(Market.id)
        ).scalar_one()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    gap = {"market_id": market_id, "timeframe": "1m", "start": start, "missing_count": 1}

    with pytest.raises(sa.exc.IntegrityError), migrated.begin() as conn:
        # Bypass the Enum type's Python-side check so the CHECK constraint itself is exercised.
        conn.execute(
            sa.text(
                'INSERT INTO candle_gaps (market_id, timeframe, start, "end", missing_count, status,'
                " attempts, first_seen)"
                " VALUES (:market_id, :timeframe, :start, :end, :missing_count, 'lost', 0, :start)"
            ),
            {**gap, "end": start + timedelta(minutes=1)},
        )

    with migrated.begin() as conn:
        conn.execute(sa.insert(CandleGap).values(**gap, end=start + timedelta(minutes=1)))
        status = conn.execute(sa.select(CandleGap.status)).scalar_one()
    assert status is GapStatus.OPEN


def test_session_scope_commits_on_success_and_rolls_back_on_error(fresh_pg_url: str) -> None:
    migrate.upgrade(fresh_pg_url)
    engine = create_ledger_engine(fresh_pg_url)
    factory = session_factory(engine)
    try:
        with session_scope(factory) as session:
            session.add(Market(exchange="binance", symbol="BTC/USDT", base_timeframe="1m"))

        with pytest.raises(RuntimeError, match="boom"), session_scope(engine) as session:
            session.add(Market(exchange="kraken", symbol="BTC/USD", base_timeframe="1m"))
            session.flush()  # the row reached the server inside the transaction...
            raise RuntimeError("boom")

        with engine.connect() as conn:
            exchanges = conn.execute(sa.select(Market.exchange)).scalars().all()
        assert exchanges == ["binance"]  # ...and the rollback took it back
    finally:
        engine.dispose()
