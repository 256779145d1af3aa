"""Exchange accounts through ccxt: an authenticated client, its ``fetch_balance`` answer as :class:`Balance`
rows, and the rule that an exchange only reports the present (so its snapshots cannot be backfilled)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol

from marketkeeper.balances.accounts import Account
from marketkeeper.balances.errors import BalanceError, BalanceFetchError
from marketkeeper.balances.snapshot import Balance
from marketkeeper.errors import ConfigurationError

#: How far in the past an exchange account's snapshot may be stamped (a delayed or retried hourly run).
EXCHANGE_MAX_LAG: Final = timedelta(hours=1)
_ZERO = Decimal(0)


class BalanceExchange(Protocol):
    """The part of a ccxt exchange a snapshot needs."""

    id: str

    def fetch_balance(self, params: Mapping[str, Any] = ...) -> Mapping[str, Any]: ...


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


def check_stamp(account: Account, at: datetime, *, max_lag: timedelta = EXCHANGE_MAX_LAG) -> None:
    """Refuse to stamp an exchange's present balances on an instant more than ``max_lag`` ago (a backfill
    would record a balance that never was).

    :raises BalanceError: ``at`` is too old.
    """
    if datetime.now(UTC) - at > max_lag:
        raise BalanceError(
            account.name,
            f"an exchange reports present balances only; refusing to stamp them at {at.isoformat()}, "
            f"more than {max_lag} ago (paper accounts can be backfilled, exchange accounts cannot)",
        )


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
