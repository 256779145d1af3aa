"""Balance snapshots: read an account's balances (an exchange through ccxt, or a paper account from the ledger)
and record them, one ``balance_snapshots`` row per currency stamped at the end of the snapshot's interval.

An account is declared once (as an Airflow Connection, see :mod:`marketkeeper.airflow.accounts`) and parsed
into an :class:`Account`. Writing a snapshot is idempotent: the rows of the same account and instant are
replaced, and the InfluxDB points (measurement ``balances``) overwrite themselves (same series, same time).
"""

from __future__ import annotations

import enum
import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final, Protocol

import sqlalchemy as sa

from marketkeeper.errors import ConfigurationError, MarketkeeperError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from marketkeeper.influxdb import InfluxDBClient

log = logging.getLogger(__name__)

#: The InfluxDB measurement the snapshots also go to.
BALANCES_MEASUREMENT: Final = "balances"
#: How far in the past an exchange account's snapshot may be stamped (a delayed or retried hourly run).
EXCHANGE_MAX_LAG: Final = timedelta(hours=1)
_ZERO = Decimal(0)


class AccountKind(enum.StrEnum):
    """Where an account's balances come from."""

    EXCHANGE = "exchange"  #: ccxt ``fetch_balance`` with the account's API keys
    PAPER = "paper"  #: the ledger: starting capital plus realized P&L minus fees


class BalanceError(MarketkeeperError):
    """A snapshot of an account could not be taken.

    :ivar account: the account's name (its Airflow connection id).
    """

    def __init__(self, account: str, message: str) -> None:
        super().__init__(f"balance snapshot of account {account!r}: {message}")
        self.account = account


class BalanceFetchError(BalanceError):
    """The exchange refused or failed ``fetch_balance``; the cause names the ccxt error (secrets redacted)."""

    def __init__(self, account: str, exchange: str, cause: str) -> None:
        super().__init__(account, f"{exchange} fetch_balance failed: {cause}")
        self.exchange = exchange
        self.cause = cause


class BalanceExchange(Protocol):
    """The part of a ccxt exchange a snapshot needs."""

    id: str

    def fetch_balance(self, params: Mapping[str, Any] = ...) -> Mapping[str, Any]: ...


def _decimal(value: object, *, what: str, account: str) -> Decimal:
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError) as exc:
        raise ConfigurationError(f"account {account!r}: {what} must be a number, got {value!r}") from exc
    if not number.is_finite():
        raise ConfigurationError(f"account {account!r}: {what} must be finite, got {value!r}")
    return number


def _uuid(value: object, *, what: str, account: str) -> uuid.UUID | None:
    if value in (None, ""):
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise ConfigurationError(f"account {account!r}: {what} must be a UUID, got {value!r}") from exc


def _json_object(value: object, *, what: str, account: str) -> Mapping[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"account {account!r}: {what} is not valid JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"account {account!r}: {what} must be a JSON object, got {value!r}")
    return value


@dataclass(frozen=True)
class Account:
    """One account whose balances are snapshotted.

    :ivar name: the account's name, its Airflow connection id; tags the InfluxDB points.
    :ivar kind: exchange or paper.
    :ivar exchange: exchange accounts: the ccxt exchange id, also the ``exchange`` of the snapshot rows.
        Paper accounts: ``None``; their rows carry the bot's own ``exchange`` label.
    :ivar user_id: the owner; required for exchange accounts, taken from the bot for paper accounts.
    :ivar bot_id: paper accounts: the bot whose trades move the balance.
    :ivar starting_capital: paper accounts: the balance per currency before the first trade.
    :ivar currencies: only these currencies are recorded (``None``: every currency with a balance).
    """

    name: str
    kind: AccountKind
    exchange: str | None = None
    user_id: uuid.UUID | None = None
    bot_id: uuid.UUID | None = None
    starting_capital: Mapping[str, Decimal] = field(default_factory=dict)
    currencies: frozenset[str] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)

    @classmethod
    def from_connection_fields(
        cls, name: str, *, login: str | None, password: str | None, extra: Mapping[str, Any]
    ) -> Account:
        """Parse an account from the fields of its Airflow Connection.

        ``login``/``password`` hold the exchange API key and secret. Extras: ``kind`` (``exchange`` or
        ``paper``), ``exchange`` (ccxt id), ``user_id``, ``bot_id``, ``starting_capital`` (object or JSON text,
        currency to amount, e.g. ``{"USDT": "10000"}``), ``currencies`` (list or comma-separated),
        ``passphrase`` (exchanges that want one, e.g. OKX), ``options`` (ccxt constructor options).

        :raises ConfigurationError: a field is missing or malformed (the message never holds a secret).
        """
        raw_kind = str(extra.get("kind") or "").strip().lower()
        try:
            kind = AccountKind(raw_kind)
        except ValueError as exc:
            raise ConfigurationError(
                f"account {name!r}: extra 'kind' must be 'exchange' or 'paper', got {extra.get('kind')!r}"
            ) from exc
        capital = {
            str(currency).strip().upper(): _decimal(amount, what=f"starting_capital[{currency!r}]", account=name)
            for currency, amount in _json_object(
                extra.get("starting_capital"), what="starting_capital", account=name
            ).items()
        }
        raw_currencies = extra.get("currencies")
        if isinstance(raw_currencies, str):
            raw_currencies = [part for part in raw_currencies.split(",") if part.strip()]
        currencies = frozenset(str(c).strip().upper() for c in raw_currencies) if raw_currencies else None
        exchange = str(extra.get("exchange") or "").strip().lower() or None
        account = cls(
            name=name,
            kind=kind,
            exchange=exchange,
            user_id=_uuid(extra.get("user_id"), what="user_id", account=name),
            bot_id=_uuid(extra.get("bot_id"), what="bot_id", account=name),
            starting_capital=capital,
            currencies=currencies,
            options=_json_object(extra.get("options"), what="options", account=name),
            api_key=login or None,
            secret=password or None,
            passphrase=str(extra["passphrase"]) if extra.get("passphrase") else None,
        )
        account.validate()
        return account

    def validate(self) -> None:
        """Check the fields the account's kind needs.

        :raises ConfigurationError: naming the missing field.
        """
        if self.kind is AccountKind.EXCHANGE:
            missing = [n for n, v in (("exchange", self.exchange), ("user_id", self.user_id)) if not v]
            if not (self.api_key and self.secret):
                missing.append("login (API key) and password (API secret)")
            if missing:
                raise ConfigurationError(f"exchange account {self.name!r} needs {', '.join(missing)}")
        elif self.bot_id is None:
            raise ConfigurationError(f"paper account {self.name!r} needs the extra 'bot_id'")

    def redact(self, text: str) -> str:
        """``text`` with the account's secrets and any URL ``signature`` parameter replaced by ``***``."""
        for secret in (self.api_key, self.secret, self.passphrase):
            if secret:
                text = text.replace(secret, "***")
        return re.sub(r"(signature=)[^&\s\"']+", r"\1***", text)


@dataclass(frozen=True)
class Balance:
    """One currency's balance: ``total = available + locked`` as the exchange reports them."""

    currency: str
    total: Decimal
    available: Decimal
    locked: Decimal = _ZERO


@dataclass(frozen=True)
class SnapshotReport:
    """What one snapshot recorded."""

    account: str
    kind: AccountKind
    user_id: uuid.UUID
    exchange: str
    timestamp: datetime
    balances: tuple[Balance, ...]
    influxdb_points: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (XCom): decimals as strings, times as ISO 8601."""
        return {
            "account": self.account,
            "kind": self.kind.value,
            "user_id": str(self.user_id),
            "exchange": self.exchange,
            "timestamp": self.timestamp.isoformat(),
            "balances": {b.currency: str(b.total) for b in self.balances},
            "influxdb_points": self.influxdb_points,
        }


# --- exchange accounts -----------------------------------------------------------------------------------


def make_exchange_client(account: Account) -> BalanceExchange:
    """A ccxt exchange authenticated with the account's keys (rate limiting on).

    :raises ConfigurationError: ccxt has no exchange of that id.
    """
    import ccxt

    exchange_id = account.exchange or ""
    factory = getattr(ccxt, exchange_id, None)
    if exchange_id not in ccxt.exchanges or factory is None:
        raise ConfigurationError(f"account {account.name!r}: ccxt has no exchange {exchange_id!r}")
    config: dict[str, Any] = {"apiKey": account.api_key, "secret": account.secret, "enableRateLimit": True}
    if account.passphrase:
        config["password"] = account.passphrase  # ccxt's name for the API passphrase
    if account.options:
        config["options"] = dict(account.options)
    client: BalanceExchange = factory(config)
    return client


def _amount(value: object) -> Decimal:
    if value is None:
        return _ZERO
    # str() first: ccxt hands back floats, and Decimal(float) would keep its binary noise.
    return Decimal(str(value))


def parse_ccxt_balance(raw: Mapping[str, Any]) -> list[Balance]:
    """Balances from a ccxt ``fetch_balance`` answer (its ``total``/``free``/``used`` maps), sorted by currency.

    A missing ``free`` or ``used`` is derived from the other two figures, as exchanges report only some.
    """
    totals: Mapping[str, Any] = raw.get("total") or {}
    free: Mapping[str, Any] = raw.get("free") or {}
    used: Mapping[str, Any] = raw.get("used") or {}
    balances = []
    for currency in sorted(set(totals) | set(free) | set(used)):
        t, f, u = totals.get(currency), free.get(currency), used.get(currency)
        if t is None and f is None and u is None:
            continue
        total = _amount(t) if t is not None else _amount(f) + _amount(u)
        available = _amount(f) if f is not None else total - _amount(u)
        locked = _amount(u) if u is not None else total - available
        balances.append(Balance(currency.upper(), total, available, locked))
    return balances


def fetch_exchange_balances(account: Account, client: BalanceExchange | None = None) -> list[Balance]:
    """The account's balances from its exchange.

    :param client: a ccxt exchange (tests pass a fake); built from the account's keys when omitted.
    :raises BalanceFetchError: ccxt raised; the message has the account's secrets redacted.
    """
    import ccxt

    client = client if client is not None else make_exchange_client(account)
    try:
        raw = client.fetch_balance()
    except ccxt.BaseError as exc:
        raise BalanceFetchError(
            account.name, account.exchange or client.id, account.redact(f"{type(exc).__name__}: {exc}")
        ) from None  # the chained ccxt error may hold the signed request URL
    return parse_ccxt_balance(raw)


# --- paper accounts --------------------------------------------------------------------------------------


def settlement_currency(symbol: str) -> str:
    """The currency a symbol's P&L and fees are paid in: the settle currency of ``BTC/USDT:USDT``, else the quote.

    :raises ValueError: the symbol is not ccxt's ``BASE/QUOTE[:SETTLE]``.
    """
    base, sep, rest = symbol.partition("/")
    if not sep or not base or not rest:
        raise ValueError(f"symbol {symbol!r} is not BASE/QUOTE: its P&L currency is unknown")
    quote, _, settle = rest.partition(":")
    return (settle or quote).split("-")[0].upper()


def paper_balances(
    starting_capital: Mapping[str, Decimal], trades: Iterable[tuple[str, Decimal | None, Decimal]]
) -> list[Balance]:
    """A paper account's balances: starting capital plus realized P&L minus fees, per settlement currency.

    Everything is available (a paper account holds no orders on an exchange), so ``locked`` is 0.

    :param starting_capital: currency to amount before the first trade.
    :param trades: ``(symbol, realized P&L or None, fee)`` of every executed trade so far.
    """
    totals = {currency.upper(): Decimal(amount) for currency, amount in starting_capital.items()}
    for symbol, pnl, fee in trades:
        currency = settlement_currency(symbol)
        totals[currency] = totals.get(currency, _ZERO) + (pnl or _ZERO) - fee
    return [Balance(currency, total, total) for currency, total in sorted(totals.items())]


def _paper_source(session: Session, account: Account, at: datetime) -> tuple[uuid.UUID, str, list[Balance]]:
    from marketkeeper.ledger import BotInstance, Trade, TradeStatus

    bot = session.get(BotInstance, account.bot_id)
    if bot is None:
        raise BalanceError(account.name, f"bot {account.bot_id} does not exist in the ledger")
    if account.user_id is not None and account.user_id != bot.user_id:
        raise ConfigurationError(
            f"paper account {account.name!r}: user_id {account.user_id} is not the owner of bot {bot.id}"
        )
    rows = session.execute(
        sa.select(Trade.symbol, Trade.pnl, Trade.fee).where(
            Trade.bot_id == bot.id,
            Trade.status.in_((TradeStatus.FILLED, TradeStatus.PARTIALLY_FILLED)),
            Trade.timestamp < at,
        )
    ).all()
    try:
        balances = paper_balances(account.starting_capital, ((r.symbol, r.pnl, r.fee) for r in rows))
    except ValueError as exc:
        raise BalanceError(account.name, str(exc)) from exc
    return bot.user_id, bot.exchange, balances


# --- writing ---------------------------------------------------------------------------------------------


def _previous_currencies(session: Session, user_id: uuid.UUID, exchange: str, at: datetime) -> set[str]:
    from marketkeeper.ledger import BalanceSnapshot

    previous = (
        sa.select(sa.func.max(BalanceSnapshot.timestamp))
        .where(
            BalanceSnapshot.user_id == user_id,
            BalanceSnapshot.exchange == exchange,
            BalanceSnapshot.timestamp < at,
        )
        .scalar_subquery()
    )
    return set(
        session.scalars(
            sa.select(BalanceSnapshot.currency).where(
                BalanceSnapshot.user_id == user_id,
                BalanceSnapshot.exchange == exchange,
                BalanceSnapshot.timestamp == previous,
            )
        )
    )


def write_snapshot(
    session: Session, *, user_id: uuid.UUID, exchange: str, at: datetime, balances: Iterable[Balance]
) -> int:
    """Replace the account's snapshot at ``at`` with ``balances`` and return how many rows were written.

    Replacing (not merging) is what makes a re-run exact: a currency that is gone from the answer is gone
    from the snapshot too.
    """
    from marketkeeper.ledger import BalanceSnapshot

    session.execute(
        sa.delete(BalanceSnapshot).where(
            BalanceSnapshot.user_id == user_id,
            BalanceSnapshot.exchange == exchange,
            BalanceSnapshot.timestamp == at,
        )
    )
    rows = [
        BalanceSnapshot(
            user_id=user_id,
            exchange=exchange,
            currency=b.currency,
            total_balance=b.total,
            available_balance=b.available,
            locked_balance=b.locked,
            timestamp=at,
        )
        for b in balances
    ]
    session.add_all(rows)
    session.flush()
    return len(rows)


def balance_lines(report: SnapshotReport) -> list[str]:
    """The snapshot as line protocol of measurement ``balances`` (tags: account, kind, user_id, exchange,
    currency; float fields: total, available, locked), nanosecond timestamps."""
    from marketkeeper.influxdb import Point

    return [
        Point(
            BALANCES_MEASUREMENT,
            fields={"total": b.total, "available": b.available, "locked": b.locked},
            tags={
                "account": report.account,
                "kind": report.kind.value,
                "user_id": str(report.user_id),
                "exchange": report.exchange,
                "currency": b.currency,
            },
            time=report.timestamp,
        ).to_line()
        for b in report.balances
    ]


def snapshot_account(
    account: Account,
    at: datetime,
    *,
    engine: Engine,
    influxdb: InfluxDBClient | None = None,
    client: BalanceExchange | None = None,
    max_lag: timedelta = EXCHANGE_MAX_LAG,
) -> SnapshotReport:
    """Take one snapshot of ``account`` stamped ``at`` into the ledger, and into InfluxDB when given.

    Exchange accounts record every currency with a non-zero balance, plus a zero row for each currency the
    previous snapshot held (so a balance that went to zero reads as zero, not as its last value). Paper
    accounts record every currency they have capital or trades in, as of trades strictly before ``at``.

    :param account: the account.
    :param at: the snapshot's instant, the end of its interval (aware).
    :param engine: the ledger.
    :param influxdb: also write measurement ``balances`` there.
    :param client: exchange accounts: a ccxt exchange to use instead of one built from the account's keys.
    :param max_lag: exchange accounts: how far ``at`` may lie in the past. An exchange reports only present
        balances, so stamping them on an older instant (a backfill) would record a balance that never was.
    :raises BalanceError: the balances could not be read (:class:`BalanceFetchError` from the exchange), or an
        exchange account was asked for an instant older than ``max_lag``.
    :raises ConfigurationError: the account is malformed.
    """
    from marketkeeper.ledger import session_scope

    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"snapshot time {at.isoformat()} is naive; pass an aware UTC datetime")
    at = at.astimezone(UTC)
    account.validate()
    if account.kind is AccountKind.EXCHANGE and datetime.now(UTC) - at > max_lag:
        raise BalanceError(
            account.name,
            f"an exchange reports present balances only; refusing to stamp them at {at.isoformat()}, "
            f"more than {max_lag} ago (paper accounts can be backfilled, exchange accounts cannot)",
        )
    fetched = fetch_exchange_balances(account, client) if account.kind is AccountKind.EXCHANGE else None
    with session_scope(engine) as session:
        if fetched is not None:
            assert account.user_id is not None and account.exchange is not None  # validate() checked
            user_id, exchange = account.user_id, account.exchange
            held = _previous_currencies(session, user_id, exchange, at)
            reported = {b.currency for b in fetched}
            balances = sorted(
                [b for b in fetched if b.total or b.available or b.locked or b.currency in held]
                + [Balance(currency, _ZERO, _ZERO, _ZERO) for currency in held - reported],
                key=lambda b: b.currency,
            )
        else:
            user_id, exchange, balances = _paper_source(session, account, at)
        if account.currencies is not None:
            balances = [b for b in balances if b.currency in account.currencies]
        write_snapshot(session, user_id=user_id, exchange=exchange, at=at, balances=balances)
    report = SnapshotReport(account.name, account.kind, user_id, exchange, at, tuple(balances))
    points = 0
    if influxdb is not None and balances:
        points = influxdb.write_lines(balance_lines(report))
    log.info(
        "account %s (%s %s): %d currencies at %s, %d InfluxDB points",
        account.name, account.kind.value, exchange, len(balances), at.isoformat(), points,
    )  # fmt: skip
    return SnapshotReport(account.name, account.kind, user_id, exchange, at, tuple(balances), points)
