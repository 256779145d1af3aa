"""The ledger: the SQL schema (PostgreSQL, or an embedded SQLite file), its engine, sessions and migrations.

``from marketkeeper.ledger import Base, Trade, session_scope`` covers everyday use; Alembic is driven through
``from marketkeeper.ledger import migrate``, imported on demand.

Names load on first use, not on import (a CLI command that reads candles from InfluxDB needs the engine, not
the ORM): the engine's names load :mod:`.engine` alone; every other name registers every model first, so
``Base.metadata`` is complete whenever it can be seen.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from marketkeeper.ledger import models

if TYPE_CHECKING:
    from marketkeeper.ledger.base import NAMING_CONVENTION, Base
    from marketkeeper.ledger.engine import create_ledger_engine, session_factory, session_scope

    # Every model and enum, as listed once in marketkeeper.ledger.models.__all__.
    from marketkeeper.ledger.models import *  # noqa: F403
    from marketkeeper.ledger.types import ExactNumeric, JSONType, NumericOverflowError, UTCDateTime, utcnow
    from marketkeeper.timeframes import NaiveDatetimeError

#: Where each name of this package lives (models' names: :mod:`marketkeeper.ledger.models`).
_HOMES = {
    "NAMING_CONVENTION": "marketkeeper.ledger.base",
    "Base": "marketkeeper.ledger.base",
    "create_ledger_engine": "marketkeeper.ledger.engine",
    "session_factory": "marketkeeper.ledger.engine",
    "session_scope": "marketkeeper.ledger.engine",
    "ExactNumeric": "marketkeeper.ledger.types",
    "JSONType": "marketkeeper.ledger.types",
    "NumericOverflowError": "marketkeeper.ledger.types",
    "UTCDateTime": "marketkeeper.ledger.types",
    "utcnow": "marketkeeper.ledger.types",
    "NaiveDatetimeError": "marketkeeper.timeframes",
}
_ENGINE_ONLY = frozenset({"create_ledger_engine", "session_factory", "session_scope"})

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "ExactNumeric",
    "JSONType",
    "NaiveDatetimeError",
    "NumericOverflowError",
    "UTCDateTime",
    "create_ledger_engine",
    "session_factory",
    "session_scope",
    "utcnow",
]
__all__ += models.__all__


def __getattr__(name: str) -> Any:
    if name in models.__all__:
        return getattr(models, name)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _ENGINE_ONLY:
        models.load()
    return getattr(importlib.import_module(home), name)
