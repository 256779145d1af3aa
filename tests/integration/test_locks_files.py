"""File locks of SQLite ledgers: beside the ledger, private, and never opened through a symbolic link."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from marketkeeper.candles import SeriesKey
from marketkeeper.errors import ConfigurationError
from marketkeeper.ledger import create_ledger_engine
from marketkeeper.locks import FileSeriesLock, SeriesLockedError, series_lock

pytestmark = pytest.mark.integration

KEY = SeriesKey.of("filetest", "BTC/USDT", "1m")


def test_lock_files_live_beside_the_ledger_and_are_private(tmp_path: Path) -> None:
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'data' / 'ledger.sqlite'}")
    with series_lock(KEY, ledger=engine, holder="writer") as lock:
        assert isinstance(lock, FileSeriesLock)
        assert lock.path.parent == tmp_path / "data" / "locks"
        assert stat.S_IMODE(os.stat(lock.path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600
        assert lock.current_holder() == "writer"
    engine.dispose()


def test_a_file_uri_ledger_keeps_its_locks_beside_its_file(tmp_path: Path) -> None:
    engine = create_ledger_engine(f"sqlite:///file:{tmp_path / 'uri.sqlite'}?mode=rwc&uri=true")
    lock = series_lock(KEY, ledger=engine)
    assert isinstance(lock, FileSeriesLock)
    assert lock.directory == tmp_path / "locks"
    engine.dispose()


def test_an_in_memory_ledger_locks_in_a_private_per_user_folder() -> None:
    engine = create_ledger_engine("sqlite://")
    with series_lock(KEY, ledger=engine, holder="memory") as lock:
        assert isinstance(lock, FileSeriesLock)
        assert lock.directory == Path(tempfile.gettempdir()) / f"marketkeeper-locks-{os.getuid()}"
        info = os.stat(lock.directory)
        assert info.st_uid == os.getuid()
        assert stat.S_IMODE(info.st_mode) == 0o700
        with pytest.raises(SeriesLockedError, match="memory"):
            series_lock(KEY, ledger=engine).acquire()
    engine.dispose()


def test_a_shared_folder_is_refused_where_a_private_one_is_required(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigurationError, match="mode 0700"):
        FileSeriesLock(shared, KEY, private=True).acquire()


def test_a_symlinked_lock_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "locks").symlink_to(elsewhere)
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    with pytest.raises(ConfigurationError, match="symbolic link"):
        series_lock(KEY, ledger=engine).acquire()
    assert list(elsewhere.iterdir()) == []
    engine.dispose()


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me\n")
    lock = FileSeriesLock(tmp_path / "locks", KEY)
    lock.directory.mkdir(mode=0o700)
    lock.path.symlink_to(victim)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        lock.acquire()
    with pytest.raises(ConfigurationError, match="symbolic link"):
        lock.current_holder()
    assert victim.read_text() == "do not truncate me\n"
    assert not lock.held
