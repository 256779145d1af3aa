"""Backups and restore drills against the real PostgreSQL, InfluxDB and Redis, with real tools (pg_dump,
influxd, redis-cli, redis-server) and a temporary backup folder: never a user's backups or databases.

The ledger is a fresh PostgreSQL database of the test's own, InfluxDB a database of the test's own, Redis DB 15
under the test's own ``mktest:<random>:`` prefix.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketkeeper.backups.destination import Destination
from marketkeeper.backups.errors import BackupError, ChecksumMismatchError, DrillFailedError, RestoreRefusedError
from marketkeeper.influxdb import InfluxDBClient
from marketkeeper.ledger import create_ledger_engine, migrate
from marketkeeper.ledger.models import BackupStatus
from marketkeeper.redis_client import RedisClient
from marketkeeper.repositories import unit_of_work
from marketkeeper.services import backups
from marketkeeper.services.demo import seed_demo
from marketkeeper.store_set import StoreConfig
from tests.conftest import INFLUXDB_TEST_DB, INFLUXDB_TEST_URL, REDIS_TEST_URL

pytestmark = pytest.mark.integration

SERIES = "binance:BTC/USDT:1m"


@pytest.fixture
def ledger(fresh_pg_url: str) -> str:
    """A migrated ledger of the test's own with a seeded paper bot (trades, balances, performance rows)."""
    migrate.upgrade(fresh_pg_url)
    seed_demo(StoreConfig(ledger_url=fresh_pg_url), trades=40, seed=3)
    return fresh_pg_url


@pytest.fixture
def influx_db() -> Iterator[str]:
    """An InfluxDB database of the test's own holding two days of 1m candles of two series."""
    name = f"{INFLUXDB_TEST_DB}_bk"
    client = InfluxDBClient(INFLUXDB_TEST_URL, database=name)
    client.drop_database()
    client.create_database()
    start = datetime(2024, 3, 1, tzinfo=UTC)
    lines = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        for minute in range(0, 2 * 24 * 60, 7):
            at = start + timedelta(minutes=minute)
            close = 100.0 + minute / 7
            lines.append(
                f"candles,exchange=binance,symbol={symbol},timeframe=1m open={close},high={close + 1},"
                f"low={close - 1},close={close},volume={minute * 0.25} {int(at.timestamp()) * 10**9}"
            )
    client.write_lines(lines)
    yield name
    for db in next(s.values for s in client.query("SHOW DATABASES", epoch=None)):
        if db[0].startswith(name):
            InfluxDBClient(INFLUXDB_TEST_URL, database=db[0]).drop_database()
    client.close()


@pytest.fixture
def redis_keys(redis_prefix: str) -> RedisClient:
    """Watermarks, latest candles and an expiring lock under the test's own prefix in DB 15."""
    client = RedisClient(REDIS_TEST_URL, prefix=redis_prefix)
    client.raw.set(client.key("candle", "watermark", SERIES), "1709337600000")
    client.raw.set(client.key("candle", "watermark", "binance:ETH/USDT:1m"), "1709337660000")
    client.raw.hset(client.key("candle", "latest", SERIES), mapping={"close": "101.5", "open_time_ms": "1"})
    client.raw.set(client.key("lock", SERIES), "token", ex=600)
    return client


@pytest.fixture
def config(ledger: str, influx_db: str, redis_keys: RedisClient) -> StoreConfig:
    return StoreConfig(
        ledger_url=ledger,
        influxdb=lambda: InfluxDBClient(INFLUXDB_TEST_URL, database=influx_db),
        redis=lambda: RedisClient(REDIS_TEST_URL, prefix=redis_keys.prefix),
    )


@pytest.fixture
def destination(tmp_path: Path) -> Destination:
    return Destination((tmp_path / "backups").as_uri())


def _files(destination: Destination) -> list[str]:
    root = Path(destination.root.path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _row(config: StoreConfig, backup_id: int) -> backups.BackupOutcome:
    return next(b for b in backups.list_backups(config) if b.id == backup_id)


def test_full_backup_and_drill_of_every_store_comes_back_equal(config: StoreConfig, destination: Destination) -> None:
    outcomes = backups.run_backups(config, destination=destination)

    assert [o.store for o in outcomes if isinstance(o, backups.BackupOutcome)] == ["ledger", "influxdb", "redis"], (
        outcomes
    )
    for outcome in outcomes:
        assert isinstance(outcome, backups.BackupOutcome)
        assert outcome.status == "succeeded" and outcome.size and len(outcome.sha256 or "") == 64
        assert Path(destination.path(outcome.location).path).stat().st_size == outcome.size
    assert not [f for f in _files(destination) if ".partial-" in f]
    engine = create_ledger_engine(config.ledger_url)
    with unit_of_work(engine) as repos:
        figures = {run.store: run.figures for run in repos.backups.complete()}
    engine.dispose()
    assert figures["ledger"]["tables"]["public.trades"]["rows"] == 40
    assert sum(v[0] for v in figures["influxdb"]["series"][SERIES].values()) == len(range(0, 2 * 24 * 60, 7))
    assert figures["redis"]["namespaces"] == {"candle:watermark": 2, "candle:latest": 1}  # the lock has a TTL
    assert figures["redis"]["watermarks"][SERIES] == "1709337600000"

    drills = backups.drill_stores(config, destination=destination)

    assert all(isinstance(d, backups.DrillOutcome) and d.passed for d in drills), "; ".join(map(str, drills))
    for drill in drills:
        assert isinstance(drill, backups.DrillOutcome)
        row = _row(config, drill.backup_id)
        assert row.status == "verified" and row.rto_seconds is not None and row.rpo_seconds is not None
    overview = _overview(config)
    assert set(overview) == {"ledger", "influxdb", "redis"}
    assert all(o.last_drill_status == "verified" for o in overview.values())
    # The scratch targets are gone: no drill database on PostgreSQL or InfluxDB.
    admin = create_ledger_engine(config.ledger_url)
    with admin.connect() as conn:
        left = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE '%drill%'")).all()
    admin.dispose()
    assert left == []
    assert config.influxdb is not None
    with config.influxdb() as client:
        names = [row[0] for s in client.query("SHOW DATABASES", epoch=None) for row in s.values]
    assert not [n for n in names if "_drill_" in n]


def _overview(config: StoreConfig) -> dict[str, object]:
    engine = create_ledger_engine(config.ledger_url)
    try:
        with unit_of_work(engine) as repos:
            return dict(repos.backups.newest_per_store())
    finally:
        engine.dispose()


# --- faults -------------------------------------------------------------------------------------------------


def _children_named(name: str, *, with_argument: str | None = None) -> list[int]:
    """PIDs of this process's children called ``name`` (read from /proc: no broad kill by name), and with
    ``with_argument`` among their arguments when given."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == name and ppid == os.getpid():
            if with_argument is not None:
                try:
                    arguments = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if with_argument.encode() not in arguments:
                    continue
            found.append(int(entry.name))
    return found


def test_pg_dump_killed_mid_way_leaves_a_failed_row_and_no_file(ledger: str, destination: Destination) -> None:
    engine = create_ledger_engine(ledger)
    with engine.begin() as conn:  # enough rows that the dump is still running when it is killed
        conn.execute(
            sa.text("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000000) g")
        )
    engine.dispose()
    config = StoreConfig(ledger_url=ledger)
    killed: list[int] = []

    def kill_pg_dump() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            # The dump itself, not the `pg_dump --version` the backup runs first to record the tool's version.
            for pid in _children_named("pg_dump", with_argument="--format=custom"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_pg_dump)
    killer.start()
    with pytest.raises(BackupError, match="pg_dump was killed by signal 9"):
        backups.run_backup(config, "ledger", destination=destination)
    killer.join()

    assert killed
    (row,) = backups.list_backups(config)
    assert row.status == "failed" and row.sha256 is None and "killed" in (row.error or "")
    assert row.finished_at is not None
    assert _files(destination) == []  # neither a final nor a temporary file


def test_a_flipped_byte_is_caught_by_verify_and_by_the_drill(ledger: str, destination: Destination) -> None:
    config = StoreConfig(ledger_url=ledger)
    backup = backups.run_backup(config, "ledger", destination=destination)
    assert backups.verify_backup(config, backup.id, destination=destination).status == "succeeded"
    stored = Path(destination.path(backup.location).path)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatchError, match=f"backup {backup.id} .* is corrupt"):
        backups.verify_backup(config, backup.id, destination=destination)
    with pytest.raises(DrillFailedError, match=f"restore drill of ledger backup {backup.id} failed: .*corrupt"):
        backups.drill_store(config, "ledger", destination=destination)

    row = _row(config, backup.id)
    assert row.status == "drill_failed" and "corrupt" in (row.drill_error or "")
    assert _overview(config)["ledger"].last_drill_status == "drill_failed"  # type: ignore[attr-defined]


@pytest.mark.filterwarnings("ignore:UPath 'fulldisk' filesystem not explicitly implemented")
def test_a_destination_failing_mid_write_gives_a_failed_row(ledger: str) -> None:
    import fsspec
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

    class FullFile(MemoryFile):  # type: ignore[misc]
        def write(self, data: bytes) -> int:
            if self.tell() + len(data) > 4096:
                raise OSError(28, "No space left on device")
            return int(super().write(data))

    class FullDisk(MemoryFileSystem):  # type: ignore[misc]
        """A bucket that takes 4 KiB per object, then fails like a full disk (no real one to fill here)."""

        protocol = "fulldisk"
        store: dict[str, object] = {}  # noqa: RUF012 - fsspec's own class-level store, kept apart from memory://
        pseudo_dirs = [""]  # noqa: RUF012

        def _open(self, path: str, mode: str = "rb", **kwargs: object) -> object:
            if "w" in mode:
                path = self._strip_protocol(path)
                return FullFile(self, path)
            return super()._open(path, mode, **kwargs)

    fsspec.register_implementation("fulldisk", FullDisk, clobber=True)
    disk = FullDisk()
    attach("fulldisk", fs=disk)
    config = StoreConfig(ledger_url=ledger)

    with pytest.raises(BackupError, match="No space left on device"):
        backups.run_backup(config, "ledger", destination=Destination("fulldisk://bucket/backups"))

    (row,) = backups.list_backups(config)
    assert row.status == "failed" and "No space left on device" in (row.error or "")
    assert [p for p in disk.store if p.endswith(".dump")] == []


def test_rotation_never_deletes_the_newest_verified_backup(ledger: str, destination: Destination) -> None:
    from marketkeeper.backups.config import BackupSettings

    config = StoreConfig(ledger_url=ledger)
    first = backups.run_backup(config, "ledger", destination=destination)
    backups.drill_store(config, "ledger", destination=destination)  # first is now verified
    middle = backups.run_backup(config, "ledger", destination=destination)
    newest = backups.run_backup(config, "ledger", destination=destination)
    keep_one = BackupSettings(
        marketkeeper_backup_keep_daily=1, marketkeeper_backup_keep_weekly=0, marketkeeper_backup_keep_monthly=0
    )

    plan = backups.prune_backups(config, dry_run=True, settings=keep_one, destination=destination)
    assert [b.id for b in plan.deleted] == [middle.id]
    assert len(_files(destination)) == 3  # a dry run deletes nothing

    plan = backups.prune_backups(config, settings=keep_one, destination=destination)

    assert sorted(b.id for b in plan.kept) == [first.id, newest.id]
    assert sorted(b.id for b in backups.list_backups(config)) == [first.id, newest.id]
    assert _files(destination) == sorted(
        str(Path(destination.path(b.location).path).relative_to(destination.root.path)) for b in (first, newest)
    )
    assert _row(config, first.id).status == BackupStatus.VERIFIED


def test_restoring_into_an_existing_database_is_refused_and_a_new_one_works(
    ledger: str, destination: Destination
) -> None:
    config = StoreConfig(ledger_url=ledger)
    backup = backups.run_backup(config, "ledger", destination=destination)
    live = sa.engine.make_url(ledger).database
    assert live is not None

    with pytest.raises(RestoreRefusedError, match=f"database '{live}' already exists"):
        backups.restore_backup(config, backup.id, live, destination=destination)

    new = f"{live}_restored"
    try:
        said = backups.restore_backup(config, backup.id, new, destination=destination)
        assert f"new database '{new}'" in said
        restored = create_ledger_engine(sa.engine.make_url(ledger).set(database=new).render_as_string(False))
        with restored.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM trades")).scalar_one() == 40
        restored.dispose()
    finally:
        admin = create_ledger_engine(ledger, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{new}" WITH (FORCE)'))
        admin.dispose()


def test_an_influxdb_that_cannot_do_portable_backups_is_a_failed_not_supported_row(
    ledger: str, destination: Destination
) -> None:
    import http.server

    class InfluxDB2(http.server.BaseHTTPRequestHandler):
        """Answers /ping like an InfluxDB 2.x (no 2.x server runs here)."""

        def do_GET(self) -> None:
            self.send_response(204)
            self.send_header("X-Influxdb-Version", "v2.7.10")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), InfluxDB2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    config = StoreConfig(ledger_url=ledger, influxdb=lambda: InfluxDBClient(url, database="marketkeeper"))
    try:
        with pytest.raises(BackupError, match=r"InfluxDB v2\.7\.10 .* cannot make a portable backup"):
            backups.run_backup(config, "influxdb", destination=destination)
    finally:
        server.shutdown()

    (row,) = backups.list_backups(config)
    assert row.store == "influxdb" and row.status == "failed" and "InfluxDB 1.x only" in (row.error or "")
    assert _files(destination) == []
