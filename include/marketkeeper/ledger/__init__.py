"""The ledger: the SQL schema (PostgreSQL, or an embedded SQLite file), its engine, sessions and migrations.

``from marketkeeper.ledger import Base, Trade, session_scope`` covers everyday use; Alembic is driven through
``from marketkeeper.ledger import migrate``, imported on demand.
"""

from __future__ import annotations

from marketkeeper.ledger import models
from marketkeeper.ledger.base import NAMING_CONVENTION, Base
from marketkeeper.ledger.engine import create_ledger_engine, session_factory, session_scope

# Every model and enum, as listed once in marketkeeper.ledger.models.__all__.
from marketkeeper.ledger.models import *  # noqa: F403
from marketkeeper.ledger.types import ExactNumeric, JSONType, NumericOverflowError, UTCDateTime, utcnow
from marketkeeper.timeframes import NaiveDatetimeError

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
