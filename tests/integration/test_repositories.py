"""The ledger repositories on the real PostgreSQL (each test in a transaction rolled back at its end), with a
smaller run of the generic CRUD, error translation, statistics and export on a migrated SQLite file."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from marketkeeper.ledger import (
    AlertSeverity,
    BotInstance,
    BotStatus,
    EventSeverity,
    PositionStatus,
    Trade,
    TradeStatus,
    User,
    create_ledger_engine,
    migrate,
)
from marketkeeper.repositories import (
    CSV_COLUMNS,
    MAX_PAGE_SIZE,
    ConflictError,
    NotFoundError,
    Repositories,
    RepositoryError,
    TradeStatistics,
    ValidationError,
    trade_statistics,
    unit_of_work,
)
from marketkeeper.repositories.bots import AmbiguousBotNameError

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
EXACT = Decimal("12345678.123456789012345678")


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_pg_engine(pg_url: str) -> Iterator[Engine]:
    """An engine on the session's PostgreSQL test database, migrated to head once."""
    migrate.upgrade(pg_url)
    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


def _joined_session(engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back afterwards: whatever the test wrote (even what
    it committed, which only releases a savepoint) disappears."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def repos(repo_pg_engine: Engine) -> Iterator[Repositories]:
    yield from (Repositories(session) for session in _joined_session(repo_pg_engine))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    migrate.upgrade(url)
    engine = create_ledger_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_repos(sqlite_engine: Engine) -> Iterator[Repositories]:
    yield from (Repositories(session) for session in _joined_session(sqlite_engine))


# --- builders ----------------------------------------------------------------------------------------------


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def make_user(repos: Repositories, **values: Any) -> User:
    tag = _tag()
    fields: dict[str, Any] = {"username": f"u{tag}", "email": f"{tag}@example.com", "password_hash": "x"}
    return repos.users.create(**(fields | values))


def make_bot(repos: Repositories, user: User | None = None, **values: Any) -> BotInstance:
    owner = user or make_user(repos)
    fields: dict[str, Any] = {
        "name": f"bot-{_tag()}",
        "user_id": owner.id,
        "strategy_type": "grid",
        "exchange": "binance",
    }
    return repos.bots.create(**(fields | values))


def make_trade(repos: Repositories, bot: BotInstance, **values: Any) -> Trade:
    fields: dict[str, Any] = {
        "bot_id": bot.id,
        "symbol": "BTC/USDT",
        "side": "buy",
        "order_type": "market",
        "quantity": Decimal("0.5"),
        "price": Decimal(60000),
        "executed_price": Decimal("60001.5"),
        "status": TradeStatus.FILLED,
        "timestamp": T0,
    }
    return repos.trades.create(**(fields | values))


# 3 wins, 2 losses and 1 open fill inside [T0, T0 + 1 day); one big win the day before.
# pnl is before fees; fees are charged on every fill, the open one included.
WINDOW_TRADES: list[tuple[Decimal | None, Decimal]] = [
    (Decimal(100), Decimal(1)),
    (Decimal("50.5"), Decimal("0.5")),
    (Decimal(-30), Decimal(1)),
    (Decimal(25), Decimal("0.25")),
    (Decimal("-45.5"), Decimal("1.25")),
    (None, Decimal(2)),
]
EARLIER_TRADE = (Decimal(1000), Decimal(10))
# By hand: gross profit 100 + 50.5 + 25 = 175.5; gross loss -30 - 45.5 = -75.5;
# fees 1 + 0.5 + 1 + 0.25 + 1.25 + 2 = 6; net 175.5 - 75.5 - 6 = 94; expectancy 94 / 5 closed = 18.8.
EXPECTED_WINDOW = TradeStatistics(
    count=5,
    wins=3,
    losses=2,
    open_count=1,
    win_rate=Decimal("0.6"),
    gross_profit=Decimal("175.5"),
    gross_loss=Decimal("-75.5"),
    fees=Decimal(6),
    net_pnl=Decimal(94),
    avg_win=Decimal("58.5"),
    avg_loss=Decimal("-37.75"),
    largest_win=Decimal(100),
    largest_loss=Decimal("-45.5"),
    profit_factor=Decimal("175.5") / Decimal("75.5"),
    expectancy=Decimal("18.8"),
)


def seed_statistics_trades(repos: Repositories) -> BotInstance:
    """The trades above for a new bot, plus a trade of another bot in the same window (never counted)."""
    bot = make_bot(repos)
    for hour, (pnl, fee) in enumerate(WINDOW_TRADES, start=1):
        make_trade(repos, bot, pnl=pnl, fee=fee, timestamp=T0 + timedelta(hours=hour))
    make_trade(repos, bot, pnl=EARLIER_TRADE[0], fee=EARLIER_TRADE[1], timestamp=T0 - timedelta(hours=1))
    make_trade(repos, make_bot(repos), pnl=Decimal(-999), fee=Decimal(9), timestamp=T0 + timedelta(hours=2))
    return bot


# --- generic CRUD ------------------------------------------------------------------------------------------


def test_create_sets_id_and_defaults_and_get_returns_the_row(repos: Repositories) -> None:
    user = make_user(repos, username="alice_crud", email="alice_crud@example.com")

    assert isinstance(user.id, uuid.UUID)
    assert user.is_active is True
    assert user.created_at.tzinfo is not None
    assert repos.users.get(user.id) is user
    assert repos.users.get(str(user.id)) is user


def test_update_changes_known_fields_and_refreshes_updated_at(repos: Repositories) -> None:
    bot = make_bot(repos)
    before = bot.updated_at

    updated = repos.bots.update(bot.id, status="running", config={"grid": 10})

    assert updated.status is BotStatus.RUNNING
    assert updated.config == {"grid": 10}
    assert updated.updated_at > before
    repos.session.expire_all()
    assert repos.bots.get(bot.id).status is BotStatus.RUNNING


def test_delete_removes_the_row(repos: Repositories) -> None:
    strategy = repos.strategies.create(name="mean-revert", strategy_type="dynamic")

    repos.strategies.delete(strategy.id)

    with pytest.raises(NotFoundError):
        repos.strategies.get(strategy.id)


def test_list_pages_cover_every_row_once_in_order(repos: Repositories) -> None:
    before = repos.users.list().total
    mine = {make_user(repos).id for _ in range(25)}

    seen: list[uuid.UUID] = []
    offset = 0
    while True:
        page = repos.users.list(limit=10, offset=offset, order="username")
        assert page.total == before + 25
        assert len(page) <= 10
        seen.extend(user.id for user in page)
        if not page.has_more:
            break
        offset += page.limit

    assert len(seen) == len(set(seen)) == before + 25
    assert mine <= set(seen)
    names = [repos.users.get(user_id).username for user_id in seen]
    assert names == sorted(names)


def test_list_orders_descending_with_a_minus(repos: Repositories) -> None:
    bot = make_bot(repos)
    for quantity in ("2", "10", "1.5"):
        make_trade(repos, bot, quantity=Decimal(quantity))

    page = repos.trades.by_bot(bot.id)
    ordered = repos.trades.by_bot(bot.id, order="-quantity")

    assert page.total == 3
    assert [trade.quantity for trade in ordered] == [Decimal(10), Decimal(2), Decimal("1.5")]


def test_bulk_create_inserts_every_row_and_bulk_update_changes_them(repos: Repositories) -> None:
    user = make_user(repos)
    bots = repos.bots.bulk_create(
        [{"name": f"b{i}", "user_id": user.id, "strategy_type": "grid", "exchange": "kraken"} for i in range(3)]
    )
    stamps = {bot.id: bot.updated_at for bot in bots}

    count = repos.bots.bulk_update([{"id": bot.id, "status": BotStatus.RUNNING} for bot in bots[:2]])

    assert count == 2
    assert [bot.name for bot in repos.bots.by_user(user.id)] == ["b0", "b1", "b2"]
    assert [bot.status for bot in repos.bots.by_user(user.id)] == [BotStatus.RUNNING, BotStatus.RUNNING, "stopped"]
    assert bots[0].updated_at > stamps[bots[0].id]
    assert repos.bots.bulk_update([]) == 0


def test_bulk_update_with_an_unknown_id_changes_nothing(repos: Repositories) -> None:
    bot = make_bot(repos)
    ghost = uuid.uuid4()

    with pytest.raises(NotFoundError, match=str(ghost)):
        repos.bots.bulk_update([{"id": bot.id, "status": "running"}, {"id": ghost, "status": "running"}])

    repos.session.expire_all()
    assert repos.bots.get(bot.id).status is BotStatus.STOPPED


def test_bulk_update_refuses_rows_without_id_repeated_ids_or_no_change(repos: Repositories) -> None:
    bot = make_bot(repos)

    with pytest.raises(ValidationError, match="no 'id'"):
        repos.bots.bulk_update([{"status": "running"}])
    with pytest.raises(ValidationError, match="repeats"):
        repos.bots.bulk_update([{"id": bot.id, "status": "running"}, {"id": bot.id, "status": "paused"}])
    with pytest.raises(ValidationError, match="changes nothing"):
        repos.bots.bulk_update([{"id": bot.id}])


def test_bulk_create_validates_every_row_before_writing(repos: Repositories) -> None:
    user = make_user(repos)
    rows = [
        {"name": "ok", "user_id": user.id, "strategy_type": "grid", "exchange": "binance"},
        {"name": "bad", "user_id": user.id, "strategy_type": "grid", "exchange": "binance", "status": "asleep"},
    ]

    with pytest.raises(ValidationError, match="asleep"):
        repos.bots.bulk_create(rows)

    assert repos.bots.by_user(user.id) == []


# --- errors ------------------------------------------------------------------------------------------------


def test_get_of_a_missing_id_raises_not_found_naming_model_and_id(repos: Repositories) -> None:
    ghost = uuid.uuid4()

    with pytest.raises(NotFoundError, match=f"BotInstance with id={ghost}") as caught:
        repos.bots.get(ghost)

    assert caught.value.model == "BotInstance"
    assert caught.value.key == ghost


def test_update_and_delete_of_a_missing_id_raise_not_found(repos: Repositories) -> None:
    with pytest.raises(NotFoundError):
        repos.users.update(uuid.uuid4(), is_active=False)
    with pytest.raises(NotFoundError):
        repos.users.delete(uuid.uuid4())


def test_an_id_that_is_not_a_uuid_is_a_validation_error(repos: Repositories) -> None:
    with pytest.raises(ValidationError, match="not a UUID"):
        repos.users.get("42; DROP TABLE users")


def test_duplicate_username_is_a_conflict_naming_the_constraint(repos: Repositories) -> None:
    make_user(repos, username="dup_user")

    with pytest.raises(ConflictError) as caught:
        make_user(repos, username="dup_user")

    assert caught.value.constraint == "uq_users_username"
    assert caught.value.fields == ("username",)
    assert "dup_user" in str(caught.value)


def test_duplicate_bot_name_of_one_user_is_a_conflict_on_both_columns(repos: Repositories) -> None:
    user = make_user(repos)
    make_bot(repos, user, name="grid-1")
    make_bot(repos, make_user(repos), name="grid-1")  # another user may reuse the name

    with pytest.raises(ConflictError) as caught:
        make_bot(repos, user, name="grid-1")

    assert caught.value.constraint == "uq_bot_instances_user_id_name"
    assert set(caught.value.fields) == {"user_id", "name"}


def test_update_onto_a_taken_ml_model_version_is_a_conflict(repos: Repositories) -> None:
    repos.ml_models.create(name="lstm", model_type="torch", version="1", file_path="/m/1")
    second = repos.ml_models.create(name="lstm", model_type="torch", version="2", file_path="/m/2")

    with pytest.raises(ConflictError, match="uq_ml_models_name_version"):
        repos.ml_models.update(second.id, version="1")


def test_deleting_a_bot_that_has_trades_is_a_conflict(repos: Repositories) -> None:
    bot = make_bot(repos)
    make_trade(repos, bot)

    with pytest.raises(ConflictError, match="still referenced") as caught:
        repos.bots.delete(bot.id)

    assert caught.value.constraint == "fk_trades_bot_id_bot_instances"


def test_a_trade_of_a_missing_bot_is_a_validation_error(repos: Repositories) -> None:
    with pytest.raises(ValidationError, match="fk_trades_bot_id_bot_instances"):
        make_trade(repos, BotInstance(id=uuid.uuid4()))


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"timestamp": datetime(2024, 3, 1, 12, 0)}, "timestamp", "naive datetime"),  # noqa: DTZ001
        ({"quantity": Decimal("-1")}, "quantity", "must be positive"),
        ({"quantity": 0}, "quantity", "must be positive"),
        ({"fee": Decimal("-0.01")}, "fee", "must not be negative"),
        ({"side": "hold"}, "side", "'hold' is not one of: buy, sell"),
        ({"price": 60000.5}, "price", "floats are inexact"),
        ({"price": "sixty"}, "price", "not a decimal number"),
        ({"price": "NaN"}, "price", "not a finite number"),
        ({"symbol": "X" * 33}, "symbol", "at most 32 allowed"),
        ({"symbol": None}, "symbol", "may not be null"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_invalid_trade_input_is_refused_before_reaching_the_database(
    repos: Repositories, changes: dict[str, Any], field: str, message: str
) -> None:
    bot = make_bot(repos)

    with pytest.raises(ValidationError, match=message) as caught:
        make_trade(repos, bot, **changes)

    assert caught.value.field == field
    assert caught.value.model == "Trade"
    assert repos.trades.by_bot(bot.id).total == 0


def test_missing_required_fields_are_named(repos: Repositories) -> None:
    with pytest.raises(ValidationError, match=r"missing required field.*password_hash"):
        repos.users.create(username="nopass", email="nopass@example.com")


def test_update_refuses_unknown_fields_and_the_primary_key(repos: Repositories) -> None:
    user = make_user(repos)

    with pytest.raises(ValidationError, match=r"unknown field.*nickname"):
        repos.users.update(user.id, nickname="al")
    with pytest.raises(ValidationError, match="primary key"):
        repos.users.update(user.id, id=uuid.uuid4())


@pytest.mark.parametrize(
    ("limit", "offset", "field"),
    [(0, 0, "limit"), (MAX_PAGE_SIZE + 1, 0, "limit"), (10, -1, "offset"), (True, 0, "limit")],
)
def test_page_bounds_out_of_range_are_validation_errors(
    repos: Repositories, limit: int, offset: int, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        repos.users.list(limit=limit, offset=offset)

    assert caught.value.field == field


def test_ordering_by_an_unknown_column_is_a_validation_error(repos: Repositories) -> None:
    with pytest.raises(ValidationError, match="cannot order by unknown field 'password'"):
        repos.users.list(order="-password")


def test_windows_must_be_aware_and_ordered(repos: Repositories) -> None:
    bot = make_bot(repos)

    with pytest.raises(ValidationError, match="naive"):
        repos.trades.by_bot(bot.id, start=datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValidationError, match="must be before end"):
        repos.trades.statistics(bot.id, start=T0, end=T0)


def test_queries_about_a_missing_bot_raise_instead_of_answering_empty(repos: Repositories) -> None:
    ghost = uuid.uuid4()

    for query in (
        lambda: repos.trades.by_bot(ghost),
        lambda: repos.trades.statistics(ghost),
        lambda: repos.trades.export_csv(ghost, io.StringIO()),
        lambda: repos.positions.by_bot(ghost),
        lambda: repos.performance.by_bot(ghost),
    ):
        with pytest.raises(NotFoundError, match=f"BotInstance with id={ghost}"):
            query()


def test_repository_errors_share_one_base() -> None:
    assert issubclass(NotFoundError, RepositoryError)
    assert issubclass(ConflictError, RepositoryError)
    assert issubclass(ValidationError, RepositoryError)


# --- users and bots ----------------------------------------------------------------------------------------


def test_users_by_username_email_and_active(repos: Repositories) -> None:
    alice = make_user(repos, username="alice_q", email="alice_q@example.com")
    idle = make_user(repos, is_active=False)

    assert repos.users.find_by_username("alice_q") is alice
    assert repos.users.find_by_email("alice_q@example.com") is alice
    assert repos.users.find_by_username("nobody_here") is None
    assert repos.users.find_by_email("nobody@example.com") is None
    active = {user.id for user in repos.users.list(limit=MAX_PAGE_SIZE).items if user.is_active}
    listed = {user.id for user in repos.users.active(limit=MAX_PAGE_SIZE)}
    assert alice.id in listed
    assert idle.id not in listed
    assert listed == active


def test_bots_by_user_by_name_and_running(repos: Repositories) -> None:
    user = make_user(repos)
    zeta = make_bot(repos, user, name="zeta", status=BotStatus.RUNNING)
    alpha = make_bot(repos, user, name="alpha")
    other = make_bot(repos, name="alpha", status="running")

    assert repos.bots.by_user(user.id) == [alpha, zeta]
    assert repos.bots.find_by_name(user.id, "alpha") is alpha
    assert repos.bots.find_by_name(user.id, "missing") is None
    running = {bot.id for bot in repos.bots.running()}
    assert {zeta.id, other.id} <= running
    assert alpha.id not in running


# --- trades ------------------------------------------------------------------------------------------------


def test_trades_by_bot_are_paged_newest_first(repos: Repositories) -> None:
    bot = make_bot(repos)
    trades = [make_trade(repos, bot, timestamp=T0 + timedelta(minutes=i)) for i in range(7)]
    make_trade(repos, make_bot(repos))

    first = repos.trades.by_bot(bot.id, limit=3)
    last = repos.trades.by_bot(bot.id, limit=3, offset=6)

    assert first.total == 7
    assert [t.id for t in first] == [t.id for t in reversed(trades[4:])]
    assert first.has_more
    assert [t.id for t in last] == [trades[0].id]
    assert not last.has_more


def test_trades_by_symbol_within_an_optional_window(repos: Repositories) -> None:
    symbol = f"{_tag()}/USDT"
    bot = make_bot(repos)
    early = make_trade(repos, bot, symbol=symbol, timestamp=T0)
    late = make_trade(repos, make_bot(repos), symbol=symbol, timestamp=T0 + DAY)
    make_trade(repos, bot, symbol="ETH/USDT", timestamp=T0)

    assert [t.id for t in repos.trades.by_symbol(symbol)] == [late.id, early.id]
    # Half-open: a trade exactly at ``end`` belongs to the next window.
    assert [t.id for t in repos.trades.by_symbol(symbol, start=T0, end=T0 + DAY)] == [early.id]
    assert [t.id for t in repos.trades.by_symbol(symbol, start=T0 + DAY)] == [late.id]


def test_trades_by_date_range_accept_any_timezone(repos: Repositories) -> None:
    bot = make_bot(repos)
    inside = make_trade(repos, bot, timestamp=datetime(1999, 1, 1, 12, tzinfo=UTC))
    make_trade(repos, bot, timestamp=datetime(1999, 1, 2, 12, tzinfo=UTC))
    tokyo = timezone(timedelta(hours=9))

    page = repos.trades.by_date_range(datetime(1999, 1, 1, 9, tzinfo=tokyo), datetime(1999, 1, 2, 9, tzinfo=tokyo))

    assert [t.id for t in page] == [inside.id]
    assert page.items[0].timestamp == datetime(1999, 1, 1, 12, tzinfo=UTC)


def test_trade_statistics_match_the_hand_computed_figures(repos: Repositories) -> None:
    bot = seed_statistics_trades(repos)

    stats = repos.trades.statistics(bot.id, start=T0, end=T0 + DAY)

    assert stats == EXPECTED_WINDOW
    assert stats.breakeven == 0


def test_aggregations_over_a_window_and_over_all_time(repos: Repositories) -> None:
    bot = seed_statistics_trades(repos)

    assert repos.trades.total_pnl(bot.id, start=T0, end=T0 + DAY) == Decimal(94)
    assert repos.trades.trade_count(bot.id, start=T0, end=T0 + DAY) == 6
    assert repos.trades.win_rate(bot.id, start=T0, end=T0 + DAY) == Decimal("0.6")
    # All time adds the earlier +1000 win and its fee of 10.
    assert repos.trades.total_pnl(bot.id) == Decimal(94 + 1000 - 10)
    assert repos.trades.trade_count(bot.id) == 7
    assert repos.trades.win_rate(bot.id) == Decimal(4) / Decimal(6)


def test_sql_statistics_equal_the_python_reference(repos: Repositories) -> None:
    bot = seed_statistics_trades(repos)
    make_trade(repos, bot, pnl=EXACT, fee=Decimal("0.000000000000000001"), timestamp=T0 + timedelta(hours=9))

    pairs = [(trade.pnl, trade.fee) for trade in repos.trades.iter_by_bot(bot.id)]

    assert repos.trades.statistics(bot.id) == trade_statistics(pairs)


def test_statistics_without_trades_or_losses_leave_undefined_ratios_empty(repos: Repositories) -> None:
    empty = repos.trades.statistics(make_bot(repos).id)
    bot = make_bot(repos)
    make_trade(repos, bot, pnl=Decimal(0), fee=Decimal(1))
    make_trade(repos, bot, pnl=Decimal(10), fee=Decimal(0))
    no_losses = repos.trades.statistics(bot.id)

    assert (empty.count, empty.open_count, empty.net_pnl, empty.fees) == (0, 0, Decimal(0), Decimal(0))
    assert (empty.win_rate, empty.expectancy, empty.profit_factor, empty.avg_win, empty.largest_loss) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert (no_losses.count, no_losses.wins, no_losses.losses, no_losses.breakeven) == (2, 1, 0, 1)
    assert no_losses.win_rate == Decimal("0.5")
    assert no_losses.profit_factor is None
    assert no_losses.avg_loss is None
    assert no_losses.net_pnl == Decimal(9)
    assert no_losses.expectancy == Decimal("4.5")


# --- CSV export --------------------------------------------------------------------------------------------


def _exported(repos: Repositories, bot: BotInstance, **window: datetime) -> tuple[int, list[dict[str, str]]]:
    buffer = io.StringIO(newline="")
    written = repos.trades.export_csv(bot.id, buffer, batch_size=2, **window)
    buffer.seek(0)
    reader = csv.DictReader(buffer)
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return written, list(reader)


def test_csv_export_round_trips_exact_decimals_and_utc_times(repos: Repositories) -> None:
    bot = seed_statistics_trades(repos)
    exact = make_trade(repos, bot, quantity=EXACT, pnl=-EXACT, fee=Decimal("0.000000000000000001"), timestamp=T0 + DAY)

    written, rows = _exported(repos, bot)

    trades = list(repos.trades.iter_by_bot(bot.id))
    assert written == len(rows) == len(trades) == 8
    assert [row["id"] for row in rows] == [str(trade.id) for trade in trades]  # oldest first
    for row, trade in zip(rows, trades, strict=True):
        assert datetime.fromisoformat(row["timestamp"]) == trade.timestamp
        assert row["timestamp"].endswith("+00:00")
        for name in ("quantity", "price", "executed_price", "fee", "leverage"):
            assert Decimal(row[name]) == getattr(trade, name)
        assert (Decimal(row["pnl"]) if row["pnl"] else None) == trade.pnl
        assert row["side"] == trade.side.value
        assert row["status"] == trade.status.value
    last = rows[-1]
    assert last["id"] == str(exact.id)
    assert (last["quantity"], last["pnl"], last["fee"]) == (str(EXACT), str(-EXACT), "0.000000000000000001")
    assert rows[0]["price"] == "60000"  # no 18-place padding, no exponent


def test_csv_export_respects_the_window(repos: Repositories) -> None:
    bot = seed_statistics_trades(repos)

    written, rows = _exported(repos, bot, start=T0, end=T0 + DAY)

    assert written == 6
    assert sum((Decimal(row["pnl"]) for row in rows if row["pnl"]), Decimal(0)) == Decimal(100)
    assert sum((Decimal(row["fee"]) for row in rows), Decimal(0)) == Decimal(6)


# --- positions, balances, performance ----------------------------------------------------------------------


def _position(repos: Repositories, bot: BotInstance, **values: Any) -> Any:
    fields: dict[str, Any] = {
        "bot_id": bot.id,
        "symbol": "BTC/USDT",
        "side": "long",
        "quantity": Decimal("0.1"),
        "entry_price": Decimal(60000),
        "current_price": Decimal(61000),
        "unrealized_pnl": Decimal(100),
    }
    return repos.positions.create(**(fields | values))


def test_positions_by_bot_open_and_close(repos: Repositories) -> None:
    bot = make_bot(repos)
    first = _position(repos, bot)
    second = _position(repos, bot, symbol="ETH/USDT", side="short")
    elsewhere = _position(repos, make_bot(repos))

    closed = repos.positions.close(first.id, closed_at=T0, realized_pnl=Decimal("99.5"))

    assert closed.status is PositionStatus.CLOSED
    assert (closed.closed_at, closed.realized_pnl, closed.unrealized_pnl) == (T0, Decimal("99.5"), Decimal(0))
    assert {p.id for p in repos.positions.by_bot(bot.id)} == {first.id, second.id}
    assert [p.id for p in repos.positions.by_bot(bot.id, status="closed")] == [first.id]
    assert [p.id for p in repos.positions.open_positions(bot_id=bot.id)] == [second.id]
    everywhere = {p.id for p in repos.positions.open_positions()}
    assert {second.id, elsewhere.id} <= everywhere
    assert first.id not in everywhere
    with pytest.raises(ConflictError, match="already closed"):
        repos.positions.close(first.id, closed_at=T0)
    with pytest.raises(ValidationError, match="status"):
        repos.positions.by_bot(bot.id, status="half-open")


def test_latest_balance_snapshot_per_account_and_currency(repos: Repositories) -> None:
    user = make_user(repos)

    def snapshot(at: datetime, total: str, currency: str = "USDT", exchange: str = "binance") -> Any:
        return repos.balances.create(
            user_id=user.id,
            exchange=exchange,
            currency=currency,
            total_balance=Decimal(total),
            available_balance=Decimal(total),
            timestamp=at,
        )

    older = snapshot(T0, "100")
    newest = snapshot(T0 + DAY, "150")
    snapshot(T0 + 2 * DAY, "7", currency="BTC")
    snapshot(T0 + 3 * DAY, "999", exchange="kraken")

    assert repos.balances.find_latest(user.id, "binance", "USDT") is newest
    assert repos.balances.find_latest(user.id, "binance", "USDT", as_of=T0 + timedelta(hours=23)) is older
    assert repos.balances.find_latest(user.id, "binance", "USDT", as_of=T0 - DAY) is None
    assert repos.balances.find_latest(user.id, "binance", "EUR") is None
    history = repos.balances.history(user.id, start=T0, end=T0 + 2 * DAY, exchange="binance")
    assert [s.total_balance for s in history] == [Decimal(100), Decimal(150)]
    with pytest.raises(NotFoundError):
        repos.balances.find_latest(uuid.uuid4(), "binance", "USDT")


def test_performance_metrics_by_bot_over_inclusive_days(repos: Repositories) -> None:
    bot = make_bot(repos)
    repos.performance.bulk_create(
        [{"bot_id": bot.id, "metric_date": date(2024, 3, day), "total_trades": day} for day in range(1, 6)]
    )

    rows = repos.performance.by_bot(bot.id, start=date(2024, 3, 2), end=date(2024, 3, 4))

    assert [row.metric_date.day for row in rows] == [2, 3, 4]
    assert len(repos.performance.by_bot(bot.id)) == 5
    with pytest.raises(ValidationError, match="expected a date"):
        repos.performance.by_bot(bot.id, start=T0)
    with pytest.raises(ValidationError, match="must not be negative"):
        repos.performance.create(bot_id=bot.id, metric_date=date(2024, 3, 9), total_trades=-1)


def _balance_row(currency: str, total: str, locked: str = "0") -> dict[str, Any]:
    return {
        "currency": currency,
        "total_balance": Decimal(total),
        "available_balance": Decimal(total) - Decimal(locked),
        "locked_balance": Decimal(locked),
    }


def test_replacing_a_snapshot_instant_drops_currencies_no_longer_held(repos: Repositories) -> None:
    user = make_user(repos)
    repos.balances.replace_at(user.id, "binance", T0 - DAY, [_balance_row("USDT", "5")])  # another instant
    repos.balances.replace_at(user.id, "binance", T0, [_balance_row("BTC", "1", "0.25"), _balance_row("USDT", "9")])
    repos.balances.replace_at(user.id, "kraken", T0, [_balance_row("EUR", "3")])  # another account

    written = repos.balances.replace_at(user.id, "binance", T0, [_balance_row("USDT", "10")])

    assert [(s.currency, s.total_balance, s.timestamp) for s in written] == [("USDT", Decimal(10), T0)]
    history = repos.balances.history(user.id, exchange="binance")
    assert [(s.timestamp, s.currency, s.total_balance) for s in history] == [
        (T0 - DAY, "USDT", Decimal(5)),
        (T0, "USDT", Decimal(10)),
    ]
    assert repos.balances.currencies_before(user.id, "binance", T0) == {"USDT"}
    assert repos.balances.currencies_before(user.id, "binance", T0 - DAY) == set()


def test_replace_at_validates_every_row_before_deleting(repos: Repositories) -> None:
    user = make_user(repos)
    repos.balances.replace_at(user.id, "binance", T0, [_balance_row("USDT", "9")])

    with pytest.raises(ValidationError, match="floats are inexact"):
        repos.balances.replace_at(user.id, "binance", T0, [{**_balance_row("BTC", "1"), "total_balance": 1.5}])
    with pytest.raises(ValidationError, match="naive"):
        repos.balances.replace_at(user.id, "binance", T0.replace(tzinfo=None), [])
    with pytest.raises(NotFoundError):
        repos.balances.replace_at(uuid.uuid4(), "binance", T0, [])
    assert [s.currency for s in repos.balances.history(user.id)] == ["USDT"]


def test_deleting_snapshots_between_two_instants_includes_both(repos: Repositories) -> None:
    user = make_user(repos)
    for hour in range(4):
        repos.balances.replace_at(user.id, "paper", T0 + timedelta(hours=hour), [_balance_row("USDT", "1")])

    assert (
        repos.balances.delete_between(user.id, "paper", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)) == 2
    )
    assert [s.timestamp for s in repos.balances.history(user.id)] == [T0, T0 + timedelta(hours=3)]
    with pytest.raises(ValidationError, match="after end"):
        repos.balances.delete_between(user.id, "paper", start=T0 + DAY, end=T0)


def test_total_series_carries_the_last_value_into_the_window(repos: Repositories) -> None:
    user = make_user(repos)
    for day, total in enumerate(("100", "110", "120", "130")):
        repos.balances.replace_at(user.id, "paper", T0 + day * DAY, [_balance_row("USDT", total)])
    repos.balances.replace_at(user.id, "paper", T0 + DAY, [_balance_row("USDT", "110"), _balance_row("BTC", "1")])

    window = repos.balances.total_series(user.id, "paper", "USDT", since=T0 + timedelta(hours=12), until=T0 + 2 * DAY)
    everything = repos.balances.total_series(user.id, "paper", "USDT", since=None, until=T0 + 2 * DAY)

    assert window == [(T0, Decimal(100)), (T0 + DAY, Decimal(110)), (T0 + 2 * DAY, Decimal(120))]
    assert everything == window
    assert repos.balances.total_series(user.id, "paper", "USDT", since=T0 + DAY, until=T0 + DAY) == [
        (T0 + DAY, Decimal(110))
    ]
    assert repos.balances.total_series(user.id, "paper", "EUR", since=None, until=T0 + 9 * DAY) == []


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_upserting_days_replaces_figures_and_keeps_ids(
    backend: str, repos: Repositories, sqlite_repos: Repositories
) -> None:
    chosen = repos if backend == "postgresql" else sqlite_repos
    bot = make_bot(chosen)
    first = {"metric_date": date(2024, 3, 1), "total_trades": 2, "total_pnl": Decimal("1.5"), "sharpe_ratio": None}
    second = {"metric_date": date(2024, 3, 2), "total_trades": 0, "total_pnl": Decimal(0), "sharpe_ratio": 1.25}

    assert chosen.performance.upsert_days(bot.id, [first, second]) == 2
    (before, _) = chosen.performance.by_bot(bot.id)
    assert chosen.performance.upsert_days(bot.id, [{**first, "total_trades": 3, "sharpe_ratio": 0.5}]) == 1

    rows = chosen.performance.by_bot(bot.id)
    assert [(r.metric_date.day, r.total_trades, r.total_pnl, r.sharpe_ratio) for r in rows] == [
        (1, 3, Decimal("1.5"), 0.5),
        (2, 0, Decimal(0), 1.25),
    ]
    assert rows[0].id == before.id
    latest = chosen.performance.find_latest(bot.id)
    assert latest is not None and latest.metric_date == date(2024, 3, 2)
    assert chosen.performance.find_latest(make_bot(chosen).id) is None
    assert chosen.performance.upsert_days(bot.id, []) == 0


def test_upserting_days_refuses_bad_rows(repos: Repositories) -> None:
    bot = make_bot(repos)
    day = {"metric_date": date(2024, 3, 1), "total_trades": 1}

    with pytest.raises(ValidationError, match="repeats 2024-03-01"):
        repos.performance.upsert_days(bot.id, [day, day])
    with pytest.raises(ValidationError, match="no metric_date"):
        repos.performance.upsert_days(bot.id, [{"total_trades": 1}])
    with pytest.raises(ValidationError, match="must not be negative"):
        repos.performance.upsert_days(bot.id, [{**day, "total_trades": -1}])
    with pytest.raises(NotFoundError):
        repos.performance.upsert_days(uuid.uuid4(), [day])
    assert repos.performance.by_bot(bot.id) == []


def test_bots_resolve_by_id_or_unique_name(repos: Repositories) -> None:
    bot = make_bot(repos, name=f"solo-{_tag()}")
    shared = f"shared-{_tag()}"
    make_bot(repos, name=shared)
    make_bot(repos, name=shared)

    assert repos.bots.resolve(bot.id) is bot
    assert repos.bots.resolve(str(bot.id)) is bot
    assert repos.bots.resolve(bot.name) is bot
    with pytest.raises(NotFoundError) as missing_id:
        repos.bots.resolve(uuid.uuid4())
    assert missing_id.value.field == "id"
    with pytest.raises(NotFoundError) as missing_name:
        repos.bots.resolve("no-such-bot-anywhere")
    assert missing_name.value.field == "name"
    with pytest.raises(AmbiguousBotNameError, match="2 bots") as ambiguous:
        repos.bots.resolve(shared)
    assert ambiguous.value.count == 2
    assert bot.id in repos.bots.ids()


def test_users_and_bots_get_or_create(repos: Repositories) -> None:
    name = f"u{_tag()}"
    user, created = repos.users.get_or_create(name, email=f"{name}@example.com", password_hash="!")
    again, created_again = repos.users.get_or_create(name, email="ignored@example.com", password_hash="?")
    assert (created, created_again, again) == (True, False, user)

    bot, made = repos.bots.get_or_create(user.id, "demo", strategy_type="demo", exchange="paper")
    same, made_again = repos.bots.get_or_create(user.id, "demo", strategy_type="other", exchange="kraken")
    assert (made, made_again, same, same.exchange) == (True, False, bot, "paper")
    with pytest.raises(ValidationError, match="missing required"):
        repos.bots.get_or_create(user.id, "incomplete")


def test_executed_trades_of_a_bot_in_a_window(repos: Repositories) -> None:
    bot = make_bot(repos)
    make_trade(repos, bot, pnl=None, fee=Decimal("0.5"), timestamp=T0 + timedelta(hours=1))
    make_trade(
        repos,
        bot,
        pnl=Decimal(3),
        symbol="ETH/BTC",
        status=TradeStatus.PARTIALLY_FILLED,
        timestamp=T0 + timedelta(hours=2),
    )
    make_trade(repos, bot, pnl=Decimal(99), status=TradeStatus.CANCELLED, timestamp=T0 + timedelta(hours=3))
    make_trade(repos, bot, pnl=Decimal(7), timestamp=T0 + DAY)

    executed = repos.trades.executed(bot.id, start=T0, end=T0 + DAY)

    assert [(t.symbol, t.pnl, t.fee) for t in executed] == [
        ("BTC/USDT", None, Decimal("0.5")),
        ("ETH/BTC", Decimal(3), Decimal(0)),
    ]
    assert len(repos.trades.executed(bot.id)) == 3
    assert repos.trades.latest_executed_symbol(bot.id, before=T0 + timedelta(hours=4)) == "ETH/BTC"
    assert repos.trades.latest_executed_symbol(bot.id, before=T0) is None
    assert len(repos.trades.ids_by_bot(bot.id)) == 4
    with pytest.raises(NotFoundError):
        repos.trades.executed(uuid.uuid4())


# --- alerts, audit, events, strategies, ML models ----------------------------------------------------------


def _alert(repos: Repositories, user: User, severity: str, minute: int, **values: Any) -> Any:
    fields: dict[str, Any] = {
        "user_id": user.id,
        "alert_type": "drawdown",
        "severity": severity,
        "title": "Drawdown",
        "message": "Equity fell",
        "timestamp": T0 + timedelta(minutes=minute),
    }
    return repos.alerts.create(**(fields | values))


def test_unread_alerts_severity_and_mark_read(repos: Repositories) -> None:
    user = make_user(repos)
    low = _alert(repos, user, "low", 1)
    critical = _alert(repos, user, "critical", 2)
    seen = _alert(repos, user, "critical", 3, is_read=True)
    other = _alert(repos, make_user(repos), "critical", 4)

    assert repos.alerts.unread_by_user(user.id) == [critical, low]
    mine = {low.id, critical.id, seen.id, other.id}
    by_severity = [a.id for a in repos.alerts.by_severity(AlertSeverity.CRITICAL, limit=MAX_PAGE_SIZE) if a.id in mine]
    assert by_severity == [other.id, seen.id, critical.id]
    assert repos.alerts.mark_read([low.id, seen.id]) == 1
    assert repos.alerts.unread_by_user(user.id) == [critical]
    assert repos.alerts.mark_all_read(user.id) == 1
    assert repos.alerts.unread_by_user(user.id) == []
    with pytest.raises(NotFoundError):
        repos.alerts.mark_read([uuid.uuid4()])
    with pytest.raises(ValidationError, match="'urgent' is not one of: low, medium, high, critical"):
        repos.alerts.by_severity("urgent")


def test_audit_logs_by_user_newest_first(repos: Repositories) -> None:
    user = make_user(repos)
    for minute, action in enumerate(("login", "start_bot", "stop_bot")):
        repos.audit.record(
            user_id=user.id, action=action, resource="bot/1", ip_address="::1", timestamp=T0 + timedelta(minutes=minute)
        )
    repos.audit.record(user_id=None, action="backup", resource="ledger")

    page = repos.audit.by_user(user.id, limit=2)

    assert page.total == 3
    assert [entry.action for entry in page] == ["stop_bot", "start_bot"]


def test_system_events_log_and_recent(repos: Repositories) -> None:
    bot = make_bot(repos)
    trade = make_trade(repos, bot)
    future = datetime(2999, 1, 1, tzinfo=UTC)
    info = repos.events.log_event(
        "trade_executed",
        "info",
        "filled",
        symbol="BTC/USDT",
        trade_id=trade.id,
        details={"qty": "0.5"},
        timestamp=future,
    )
    error = repos.events.log_event("exchange_down", EventSeverity.ERROR, "timeout", timestamp=future + DAY)

    assert repos.events.recent(limit=2) == [error, info]
    assert repos.events.recent(severity="error", limit=1) == [error]
    assert info.trade_id == trade.id
    with pytest.raises(ValidationError, match="'fatal' is not one of"):
        repos.events.log_event("x", "fatal", "y")
    with pytest.raises(ValidationError, match="limit"):
        repos.events.recent(limit=0)


def test_strategy_configs_and_ml_models(repos: Repositories) -> None:
    name = f"s-{_tag()}"
    active = repos.strategies.create(name=name, strategy_type="grid", config_data={"levels": 5})
    repos.strategies.create(name=name, strategy_type="grid", is_active=False)
    model_name = f"m-{_tag()}"
    v1 = repos.ml_models.create(name=model_name, model_type="xgb", version="1", file_path="/m/1", is_active=True)
    v2 = repos.ml_models.create(name=model_name, model_type="xgb", version="2", file_path="/m/2")

    assert len(repos.strategies.by_name(name)) == 2
    assert active in repos.strategies.active(strategy_type="grid")
    assert repos.ml_models.find_version(model_name, "2") is v2
    assert repos.ml_models.find_version(model_name, "3") is None
    assert {m.id for m in repos.ml_models.versions(model_name)} == {v1.id, v2.id}
    assert v1 in repos.ml_models.active()
    assert v2 not in repos.ml_models.active()


# --- unit of work ------------------------------------------------------------------------------------------


def test_unit_of_work_commits_on_success_and_rolls_back_on_error(repo_pg_engine: Engine) -> None:
    name = f"uow{_tag()}"
    try:
        with unit_of_work(repo_pg_engine) as uow:
            uow.users.create(username=name, email=f"{name}@example.com", password_hash="x")
        with pytest.raises(ConflictError), unit_of_work(repo_pg_engine) as uow:
            uow.users.create(username=f"{name}b", email=f"{name}b@example.com", password_hash="x")
            uow.users.create(username=name, email=f"{name}c@example.com", password_hash="x")

        with unit_of_work(repo_pg_engine) as uow:
            assert uow.users.find_by_username(name) is not None
            assert uow.users.find_by_username(f"{name}b") is None  # rolled back with the failing write
    finally:
        with repo_pg_engine.begin() as connection:
            connection.execute(sa.delete(User).where(User.username.like(f"{name}%")))


# --- the same contract on SQLite ---------------------------------------------------------------------------


def test_sqlite_crud_pagination_and_errors(sqlite_repos: Repositories) -> None:
    repos = sqlite_repos
    user = make_user(repos, username="sqlite_user")
    bots = repos.bots.bulk_create(
        [{"name": f"b{i}", "user_id": user.id, "strategy_type": "grid", "exchange": "binance"} for i in range(5)]
    )

    page = repos.bots.list(limit=2, offset=2)
    assert (page.total, [b.name for b in page]) == (5, ["b2", "b3"])
    assert repos.bots.bulk_update([{"id": bot.id, "status": "running"} for bot in bots[:3]]) == 3
    assert len(repos.bots.running()) == 3
    assert repos.bots.update(bots[4].id, name="renamed").name == "renamed"
    repos.bots.delete(bots[4].id)
    with pytest.raises(NotFoundError):
        repos.bots.get(bots[4].id)
    with pytest.raises(ValidationError, match="naive"):
        repos.bots.update(bots[0].id, last_active=datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(ConflictError) as caught:
        make_user(repos, username="sqlite_user")
    assert (caught.value.constraint, caught.value.fields) == ("uq_users_username", ("username",))


def test_sqlite_delete_of_a_referenced_bot_is_a_conflict(sqlite_repos: Repositories) -> None:
    bot = make_bot(sqlite_repos)
    make_trade(sqlite_repos, bot)

    with pytest.raises(ConflictError, match="still referenced"):
        sqlite_repos.bots.delete(bot.id)


def test_sqlite_statistics_orders_and_export_match_postgresql(sqlite_repos: Repositories) -> None:
    bot = seed_statistics_trades(sqlite_repos)
    for quantity in ("9", "10", "100"):
        make_trade(sqlite_repos, bot, quantity=Decimal(quantity), timestamp=T0 + 5 * DAY)

    assert sqlite_repos.trades.statistics(bot.id, start=T0, end=T0 + DAY) == EXPECTED_WINDOW
    assert sqlite_repos.trades.total_pnl(bot.id) == Decimal(94 + 1000 - 10)
    biggest = sqlite_repos.trades.by_bot(bot.id, limit=3, order="-quantity")
    assert [t.quantity for t in biggest] == [Decimal(100), Decimal(10), Decimal(9)]  # numeric, not text order
    written, rows = _exported(sqlite_repos, bot, start=T0, end=T0 + DAY)
    assert written == 6
    assert [Decimal(row["pnl"]) if row["pnl"] else None for row in rows] == [pnl for pnl, _ in WINDOW_TRADES]


def test_sqlite_unit_of_work_rolls_back_on_error(sqlite_engine: Engine) -> None:
    with pytest.raises(RuntimeError), unit_of_work(sqlite_engine) as uow:
        make_user(uow, username="ghost_user")
        raise RuntimeError("boom")
    with unit_of_work(sqlite_engine) as uow:
        make_user(uow, username="kept_user")

    with unit_of_work(sqlite_engine) as uow:
        assert uow.users.find_by_username("ghost_user") is None
        assert uow.users.find_by_username("kept_user") is not None
