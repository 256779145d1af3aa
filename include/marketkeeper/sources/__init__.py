"""Where candles come from: one :class:`~marketkeeper.sources.base.CandleSource` interface (its errors in the same
module); ccxt, Binance-files and synthetic kinds.

``make_source`` turns the CLI's ``--source`` spelling (``ccxt``, ``files:DIR``, ``synthetic[:SEED]``)
into one.
ccxt is imported only when a ccxt source is built: it is slow to import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from marketkeeper.errors import ConfigurationError
from marketkeeper.sources.base import CandleSource
from marketkeeper.sources.binance_files import BinanceFilesSource
from marketkeeper.sources.synthetic import SyntheticSource

# The interface, its batches and its errors are imported from marketkeeper.sources.base.
__all__ = ["SOURCE_SPECS", "BinanceFilesSource", "SyntheticSource", "make_source", "parse_source_spec"]

#: The spellings :func:`make_source` accepts, for help texts and error messages.
SOURCE_SPECS = ("ccxt", "ccxt:EXCHANGE", "files:DIR", "synthetic", "synthetic:SEED")


def parse_source_spec(spec: str) -> tuple[str, str | None]:
    """Split a source spelling into its kind (``ccxt``, ``files``, ``synthetic``) and argument; validate."""
    kind, _, argument = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in ("ccxt", "files", "synthetic"):
        raise ConfigurationError(f"unknown source {spec!r}; use one of {', '.join(SOURCE_SPECS)}")
    if kind == "files" and not argument:
        raise ConfigurationError(f"source {spec!r} needs a directory: files:DIR")
    if kind == "synthetic" and argument and not argument.isdigit():
        raise ConfigurationError(f"source {spec!r}: the seed must be a non-negative integer (synthetic:SEED)")
    return kind, argument or None


def make_source(
    spec: str,
    *,
    exchange: str | None = None,
    seed: int | None = None,
    exchange_config: Mapping[str, Any] | None = None,
    holes: Sequence[tuple[datetime, datetime]] = (),
) -> CandleSource:
    """Build the source a CLI or config string names.

    :param spec: ``ccxt`` (with ``exchange``), ``ccxt:binance``, ``files:DIR``, ``synthetic[:SEED]``.
    :param exchange: the ccxt exchange id when ``spec`` is plain ``ccxt``.
    :param seed: the synthetic seed when ``spec`` has none (default 0).
    :param exchange_config: extra ccxt options (credentials, timeouts).
    :param holes: ranges the synthetic source leaves empty on purpose.
    :raises ConfigurationError: for a spelling that names no source.
    :raises UnknownExchangeError: for an exchange ccxt does not know.
    """
    kind, argument = parse_source_spec(spec)
    if kind == "files":
        if not argument:  # parse_source_spec refuses this already; kept as a real check, not an assert
            raise ConfigurationError(f"source {spec!r} needs a directory: files:DIR")
        return BinanceFilesSource(argument)
    if kind == "synthetic":
        return SyntheticSource(int(argument) if argument else (seed or 0), holes=holes)
    exchange_id = argument or exchange
    if not exchange_id:
        raise ConfigurationError("source 'ccxt' needs an exchange id (--exchange X or ccxt:X)")
    from marketkeeper.sources.ccxt_source import CcxtSource, make_exchange

    return CcxtSource(make_exchange(exchange_id, **(exchange_config or {})))
