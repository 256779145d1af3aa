"""Balance accounts: what an account declaration (an Airflow Connection's fields) says, parsed and checked.

An account is declared once (as an Airflow Connection, see :mod:`marketkeeper.airflow.accounts`) and parsed
into an :class:`Account`; its secrets never reach a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from marketkeeper.errors import ConfigurationError


class AccountKind(enum.StrEnum):
    """Where an account's balances come from."""

    EXCHANGE = "exchange"  #: ccxt ``fetch_balance`` with the account's API keys
    PAPER = "paper"  #: the ledger: starting capital plus realized P&L minus fees


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

    def exchange_owner(self) -> tuple[uuid.UUID, str]:
        """An exchange account's ``(user_id, exchange)``, the account its snapshot rows are recorded under.

        :raises ConfigurationError: the account is not a complete exchange account.
        """
        self.validate()
        if self.kind is not AccountKind.EXCHANGE or self.user_id is None or self.exchange is None:
            raise ConfigurationError(f"account {self.name!r} is a {self.kind.value} account, not an exchange one")
        return self.user_id, self.exchange

    def paper_bot(self) -> uuid.UUID:
        """A paper account's bot id, the bot whose trades move its balance.

        :raises ConfigurationError: the account is not a complete paper account.
        """
        self.validate()
        if self.kind is not AccountKind.PAPER or self.bot_id is None:
            raise ConfigurationError(f"account {self.name!r} is a {self.kind.value} account, not a paper one")
        return self.bot_id

    def redact(self, text: str) -> str:
        """``text`` with the account's secrets and any URL ``signature`` parameter replaced by ``***``."""
        for secret in (self.api_key, self.secret, self.passphrase):
            if secret:
                text = text.replace(secret, "***")
        return re.sub(r"(signature=)[^&\s\"']+", r"\1***", text)
