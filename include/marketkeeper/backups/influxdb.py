"""The candle database's backup: ``influxd backup -portable`` through the server's RPC address (1.x only), the
backup folder stored as one uncompressed tar.

Portable backups leave out the WAL and the in-memory cache, and ``influxd restore`` cannot restore into an
existing database (``-newdb`` names a new one). So the figures (per series and UTC day: candle count, sum of
close and of volume) cover only candles whose open time is older than ``settle_seconds`` (default 10 minutes:
InfluxDB's cache-snapshot-write-cold-duration), and a drill restores with ``-newdb`` into a scratch database
that is dropped afterwards. A 2.x/3.x server is refused with :class:`BackupNotSupportedError`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from marketkeeper.backups.base import Figures, StoreBackup
from marketkeeper.backups.destination import HashingWriter
from marketkeeper.backups.errors import BackupError, BackupNotSupportedError, RestoreRefusedError
from marketkeeper.backups.tools import find_tool, run_tool, tool_env, tool_version
from marketkeeper.influxdb import InfluxDBClient, InfluxDBError, quote_identifier

__all__ = ["InfluxDBBackup"]

_MEASUREMENT = "candles"
_TAGS = ("exchange", "symbol", "timeframe")
#: Sums are compared to 12 significant digits: the same points summed by the same engine agree far closer.
_DIGITS = 12
#: Seconds between two reads of a restored database that must agree, and the longest wait for that.
_SETTLE = 1.5
_SETTLE_TIMEOUT = 60.0


def _rounded(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return float(f"{number:.{_DIGITS}g}") if math.isfinite(number) else number


class InfluxDBBackup(StoreBackup):
    """Backs up, restores and drills the candle database of ``client``.

    :param client: a client of the candle database (its URL, database and credentials).
    :param rpc_address: the server's RPC ``host:port`` (``bind-address`` in influxdb.conf; loopback only,
        it has no authentication).
    :param settle_seconds: candles newer than this are left out of the figures (they may sit in the WAL).
    """

    store: ClassVar[str] = "influxdb"
    kind: ClassVar[str] = "influxd-portable"
    suffix: ClassVar[str] = ".tar"

    def __init__(self, client: InfluxDBClient, *, rpc_address: str, settle_seconds: float = 600.0) -> None:
        self.client = client
        self.rpc_address = rpc_address
        self.settle_seconds = settle_seconds

    def _influxd(self) -> str:
        return find_tool("influxd", store="influxdb")

    def versions(self) -> tuple[str, str]:
        server = self.client.ping().version
        if not server.lstrip("v").startswith("1."):
            raise BackupNotSupportedError(
                f"InfluxDB {server} at {self.client.url} cannot make a portable backup through influxd's RPC "
                "(InfluxDB 1.x only): back it up with that version's own `influx backup`"
            )
        return tool_version(self._influxd(), "version"), f"InfluxDB {server}"

    def _database(self, name: str) -> InfluxDBClient:
        # The same server, credentials and HTTP session, another database. Never closed on its own: the
        # session belongs to ``self.client``.
        other = copy.copy(self.client)
        other.database = name
        return other

    # --- figures ---------------------------------------------------------------------------------------------

    def figures(self, client: InfluxDBClient, cutoff: datetime) -> Figures:
        """Per series and UTC day before ``cutoff``: candle count, sum of close, sum of volume."""
        measurement = quote_identifier(_MEASUREMENT)
        by = ", ".join(quote_identifier(t) for t in _TAGS)
        # Identifiers quoted; values bound.
        firsts = client.query(f'SELECT first("close") FROM {measurement} GROUP BY {by}', epoch="ns")  # noqa: S608
        starts = [s.values[0][0] for s in firsts if s.values]
        series: dict[str, dict[str, list[Any]]] = {}
        if starts:
            lower = datetime.fromtimestamp(min(starts) // 1_000_000_000, tz=UTC).replace(hour=0, minute=0, second=0)
            result = client.query(
                f'SELECT count("close"), sum("close"), sum("volume") FROM {measurement} '  # noqa: S608
                f"WHERE time >= $lower AND time < $cutoff GROUP BY time(1d), {by} fill(none)",
                params={"lower": lower, "cutoff": cutoff},
                epoch="s",
            )
            for s in result:
                name = ":".join(s.tags.get(t, "") for t in _TAGS)
                days = series.setdefault(name, {})
                for when, count, close_sum, volume_sum in s.values:
                    day = datetime.fromtimestamp(int(when), tz=UTC).date().isoformat()
                    days[day] = [int(count), _rounded(close_sum), _rounded(volume_sum)]
        return {"cutoff": cutoff.isoformat(), "series": series}

    def _settled_figures(self, client: InfluxDBClient, cutoff: datetime) -> Figures:
        """The figures of a database just restored, once they stop changing.

        ``influxd restore`` returns while the server is still opening the restored shards: queries then fail
        with "engine is closed" or see nothing yet. Read until two answers :data:`_SETTLE` seconds apart agree.
        """
        deadline = time.monotonic() + _SETTLE_TIMEOUT
        previous: Figures | None = None
        while True:
            try:
                current = self.figures(client, cutoff)
            except InfluxDBError:
                if time.monotonic() > deadline:
                    raise
                current = None
            if current is not None and current == previous:
                return current
            if time.monotonic() > deadline:
                return current if current is not None else {}
            previous = current
            time.sleep(_SETTLE)

    # --- backup ----------------------------------------------------------------------------------------------

    def dump(self, sink: HashingWriter) -> Figures:
        influxd = self._influxd()
        if not self.client.database_exists():
            raise BackupError(f"InfluxDB database {self.client.database!r} does not exist at {self.client.url}")
        cutoff = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=self.settle_seconds)
        figures = self.figures(self.client, cutoff)
        with tempfile.TemporaryDirectory(prefix="marketkeeper-influxdb-backup-") as tmp:
            folder = Path(tmp, "backup")
            run_tool(
                [influxd, "backup", "-portable", "-host", self.rpc_address, "-db", self.client.database, str(folder)],
                env=tool_env({}),
            )
            with tarfile.open(fileobj=sink, mode="w|") as archive:  # type: ignore[call-overload]
                for path in sorted(folder.iterdir()):
                    archive.add(path, arcname=path.name)
        return figures

    # --- restore ---------------------------------------------------------------------------------------------

    def _restore(self, local: Path, database: str) -> None:
        with tempfile.TemporaryDirectory(prefix="marketkeeper-influxdb-restore-") as tmp:
            with tarfile.open(local, mode="r:") as archive:
                archive.extractall(tmp, filter="data")
            run_tool(
                [
                    self._influxd(), "restore", "-portable", "-host", self.rpc_address,
                    "-db", self.client.database, "-newdb", database, tmp,
                ],
                env=tool_env({}),
            )  # fmt: skip

    @contextlib.contextmanager
    def scratch(self, local: Path, *, label: str, recorded: Figures) -> Iterator[Figures]:
        name = f"{self.client.database}_drill_{label}_{uuid.uuid4().hex[:6]}"
        scratch = self._database(name)
        try:
            self._restore(local, name)
            # The same cutoff as the figures recorded at backup time, so the same candles are counted.
            yield self._settled_figures(scratch, datetime.fromisoformat(str(recorded["cutoff"])))
        finally:
            scratch.drop_database()

    def restore_into(self, local: Path, name: str, *, overwrite: bool) -> str:
        if self._database(name).database_exists():
            raise RestoreRefusedError(
                f"InfluxDB database {name!r} already exists at {self.client.url} and influxd restore cannot "
                "restore into an existing database"
                + (": drop it first (DROP DATABASE), then restore" if overwrite else ": restore into a new name")
            )
        self._restore(local, name)
        return f"restored into the new InfluxDB database {name!r} at {self.client.url}"
