"""The service levels marketkeeper holds each series, store and backup to, and the breaches of them.

Defaults follow the ops brief; each is settable from the environment (``MARKETKEEPER_SLO_*``, see
:meth:`Slos.from_env`). :func:`breaches` is pure: it reads figures, never a store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from marketkeeper.errors import ConfigurationError
from marketkeeper.ops.figures import BackupFigures, Breach, SeriesFigures, StoreHealth

__all__ = ["SLO_NAMES", "Slos", "breaches"]

#: Every SLO by name, as breaches and alerts name them.
SLO_NAMES: Final = ("freshness", "gap_age", "quality", "store_up", "backup_age")
_PREFIX: Final = "MARKETKEEPER_SLO_"


@dataclass(frozen=True)
class Slos:
    """The thresholds; a breach is a figure beyond its threshold.

    :param max_lag_candles: closed candles a series may lag behind the clock, by timeframe (``"*"``: any other).
    :param max_gap_age: how long a gap may stay open (``open``, ``partially_filled`` or ``failed``).
    :param max_quality_failure_share: the share of rows failing the quality gate over 24 h (the ingest default).
    :param max_backup_age: how old the newest *verified* backup of a store may be.
    """

    max_lag_candles: Mapping[str, int] = field(default_factory=lambda: {"1m": 2, "*": 2})
    max_gap_age: timedelta = timedelta(days=1)
    max_quality_failure_share: float = 0.01
    max_backup_age: timedelta = timedelta(days=8)

    def lag_limit(self, timeframe: str) -> int:
        return self.max_lag_candles.get(timeframe, self.max_lag_candles.get("*", 2))

    def as_dict(self) -> dict[str, object]:
        return {
            "max_lag_candles": dict(self.max_lag_candles),
            "max_gap_age_hours": self.max_gap_age.total_seconds() / 3600,
            "max_quality_failure_share": self.max_quality_failure_share,
            "max_backup_age_days": self.max_backup_age.total_seconds() / 86400,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Slos:
        """The defaults, overridden by ``MARKETKEEPER_SLO_MAX_LAG_CANDLES`` (``2`` or ``1m=2,1h=1,*=3``),
        ``_MAX_GAP_AGE_HOURS``, ``_MAX_QUALITY_FAILURE_SHARE`` and ``_MAX_BACKUP_AGE_DAYS``.

        :raises ConfigurationError: a value that is not a non-negative number, naming the variable.
        """
        env = os.environ if environ is None else environ
        default = cls()

        def number(name: str, fallback: float) -> float:
            raw = env.get(_PREFIX + name, "").strip()
            if not raw:
                return fallback
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not value >= 0:
                raise ConfigurationError(f"{_PREFIX}{name} must be a non-negative number, got {raw!r}")
            return value

        lags = dict(default.max_lag_candles)
        raw_lag = env.get(_PREFIX + "MAX_LAG_CANDLES", "").strip()
        if raw_lag.isdigit():
            lags = {"*": int(raw_lag)}
        elif raw_lag:
            for entry in raw_lag.split(","):
                timeframe, _, count = entry.partition("=")
                if not count.strip().isdigit():
                    raise ConfigurationError(
                        f"{_PREFIX}MAX_LAG_CANDLES: {entry.strip()!r} is not TIMEFRAME=COUNT (e.g. 1m=2,*=3)"
                    )
                lags[timeframe.strip() or "*"] = int(count)
        return cls(
            max_lag_candles=lags,
            max_gap_age=timedelta(hours=number("MAX_GAP_AGE_HOURS", default.max_gap_age.total_seconds() / 3600)),
            max_quality_failure_share=number("MAX_QUALITY_FAILURE_SHARE", default.max_quality_failure_share),
            max_backup_age=timedelta(
                days=number("MAX_BACKUP_AGE_DAYS", default.max_backup_age.total_seconds() / 86400)
            ),
        )


def breaches(
    slos: Slos,
    now: datetime,
    series: list[SeriesFigures],
    stores: list[StoreHealth],
    backups: list[BackupFigures],
) -> list[Breach]:
    """Every SLO breach among the figures, series first, then stores, then backups."""
    found: list[Breach] = []
    for s in series:
        label = s.label
        limit = slos.lag_limit(s.timeframe)
        if s.error is not None:
            found.append(Breach("freshness", label, "high", f"{label}: cannot be read: {s.error}", None))
        elif s.last_candle is None:
            found.append(Breach("freshness", label, "high", f"{label}: no candle stored", None))
        elif s.lag_candles is not None and s.lag_candles > limit:
            found.append(
                Breach(
                    "freshness",
                    label,
                    "high",
                    f"{label}: {s.lag_candles} closed candles behind (SLO <= {limit}); "
                    f"last candle {s.last_candle:%Y-%m-%d %H:%M}",
                    s.stale_since,
                )
            )
        if s.oldest_gap_seen is not None and now - s.oldest_gap_seen > slos.max_gap_age:
            found.append(
                Breach(
                    "gap_age",
                    label,
                    "medium",
                    f"{label}: {s.open_gaps} gap(s), {s.missing_candles} missing candles, oldest open since "
                    f"{s.oldest_gap_seen:%Y-%m-%d %H:%M} (SLO <= {_hours(slos.max_gap_age)})",
                    s.oldest_gap_seen + slos.max_gap_age,
                )
            )
        share = s.quality_failure_share
        if share is not None and share > slos.max_quality_failure_share:
            found.append(
                Breach(
                    "quality",
                    label,
                    "medium",
                    f"{label}: {share:.2%} of rows failed the quality gate over 24 h "
                    f"(SLO <= {slos.max_quality_failure_share:.2%}); {s.quarantined_24h} quarantined",
                    None,
                )
            )
    for st in stores:
        if st.configured and not st.ok:
            found.append(Breach("store_up", st.store, "critical", f"{st.store} is down: {st.error}", None))
    for b in backups:
        if b.last_verified_at is None:
            found.append(Breach("backup_age", b.store, "high", f"{b.store}: no verified backup", None))
        elif now - b.last_verified_at > slos.max_backup_age:
            found.append(
                Breach(
                    "backup_age",
                    b.store,
                    "high",
                    f"{b.store}: newest verified backup {b.last_verified_at:%Y-%m-%d %H:%M} is older than "
                    f"{slos.max_backup_age.days} days",
                    b.last_verified_at + slos.max_backup_age,
                )
            )
    return found


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"
