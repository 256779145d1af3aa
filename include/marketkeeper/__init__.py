"""marketkeeper: keeps a crypto trading system's ledger, candles and caches complete, correct and recoverable.

The package is importable without Airflow; ``marketkeeper.airflow`` holds the only Airflow-aware code.
"""

from marketkeeper.errors import MarketkeeperError
from marketkeeper.settings import Settings, get_settings

__all__ = ["MarketkeeperError", "Settings", "get_settings"]
__version__ = "0.1.0"
