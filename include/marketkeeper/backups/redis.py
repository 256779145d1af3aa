"""Redis's backup: an RDB taken from the server with ``redis-cli --rdb`` (works remotely; the server forks a
snapshot for a replica-style transfer) and checked with ``redis-check-rdb`` before it is stored.

Figures: the number of persistent keys (no TTL: locks and expiring caches are left out, they may be gone by
restore time) per marketkeeper namespace (the first two parts after the prefix, e.g. ``candle:latest``) in the
client's DB, and every watermark's value. A drill starts a throwaway ``redis-server`` on a free loopback port
with the RDB and reads the same figures there. The password reaches redis-cli in ``REDISCLI_AUTH`` only.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import redis as redis_py

from marketkeeper.backups.base import Figures, StoreBackup
from marketkeeper.backups.destination import CHUNK, HashingWriter
from marketkeeper.backups.errors import BackupError, RestoreRefusedError
from marketkeeper.backups.tools import find_tool, run_tool, tool_env, tool_version
from marketkeeper.redis_client import RedisClient

__all__ = ["RedisBackup"]

_WATERMARKS = "candle:watermark:"
_START_TIMEOUT = 30.0


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def redis_figures(raw: redis_py.Redis, prefix: str) -> Figures:
    """Persistent keys per namespace under ``prefix`` and the watermark values, in ``raw``'s DB."""
    namespaces: dict[str, int] = {}
    watermarks: dict[str, str] = {}
    keys = [_text(k) for k in raw.scan_iter(match=f"{prefix}*", count=1000)]
    pipe = raw.pipeline(transaction=False)
    for key in keys:
        pipe.ttl(key)
    ttls = pipe.execute() if keys else []
    persistent = [key for key, ttl in zip(keys, ttls, strict=True) if ttl == -1]
    for key in persistent:
        rest = key[len(prefix) :]
        namespace = ":".join(rest.split(":")[:2])
        namespaces[namespace] = namespaces.get(namespace, 0) + 1
    marks = sorted(k for k in persistent if k[len(prefix) :].startswith(_WATERMARKS))
    if marks:
        for key, value in zip(marks, raw.mget(marks), strict=True):
            if value is not None:
                watermarks[key[len(prefix) + len(_WATERMARKS) :]] = _text(value)
    return {"prefix": prefix, "namespaces": namespaces, "watermarks": watermarks}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisBackup(StoreBackup):
    """Backs up, restores and drills the Redis that ``client`` talks to (its DB and key prefix).

    :param client: the namespaced client of the cache.
    """

    store: ClassVar[str] = "redis"
    kind: ClassVar[str] = "redis-rdb"
    suffix: ClassVar[str] = ".rdb"

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        kwargs: dict[str, Any] = client.raw.connection_pool.connection_kwargs
        if kwargs.get("path"):
            self._where = ["-s", str(kwargs["path"])]
        else:
            self._where = ["-h", str(kwargs.get("host", "127.0.0.1")), "-p", str(kwargs.get("port", 6379))]
        if kwargs.get("username"):
            self._where += ["--user", str(kwargs["username"])]
        if client.raw.connection_pool.connection_class is redis_py.SSLConnection:
            self._where.append("--tls")
        self._password: str | None = kwargs.get("password")
        self.db = int(kwargs.get("db", 0) or 0)

    @property
    def _secrets(self) -> list[str]:
        return [self._password] if self._password else []

    def versions(self) -> tuple[str, str]:
        return tool_version(find_tool("redis-cli", store="redis")), f"Redis {self.client.ping().version}"

    def dump(self, sink: HashingWriter) -> Figures:
        redis_cli = find_tool("redis-cli", store="redis")
        check = find_tool("redis-check-rdb", store="redis")
        try:
            figures = redis_figures(self.client.raw, self.client.prefix)
        except redis_py.RedisError as exc:
            raise BackupError(f"redis backup: reading the key figures failed: {exc}") from exc
        with tempfile.TemporaryDirectory(prefix="marketkeeper-redis-backup-") as tmp:
            rdb = Path(tmp, "dump.rdb")
            run_tool(
                [redis_cli, *self._where, "--rdb", str(rdb)],
                env=tool_env({"REDISCLI_AUTH": self._password}),
                secrets=self._secrets,
            )
            run_tool([check, str(rdb)], env=tool_env({}))
            with rdb.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    sink.write(chunk)
        return figures

    @contextlib.contextmanager
    def _server(self, local: Path) -> Iterator[redis_py.Redis]:
        """A throwaway redis-server on a free loopback port that loaded ``local``; stopped afterwards."""
        server = find_tool("redis-server", store="redis")
        with tempfile.TemporaryDirectory(prefix="marketkeeper-redis-drill-") as tmp:
            shutil.copyfile(local, Path(tmp, "dump.rdb"))
            port = _free_port()
            args = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--dbfilename", "dump.rdb",
                    "--save", "", "--appendonly", "no", "--protected-mode", "yes"]  # fmt: skip
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
            raw = redis_py.Redis(host="127.0.0.1", port=port, db=self.db, socket_timeout=10)
            try:
                deadline = time.monotonic() + _START_TIMEOUT
                while True:
                    if process.poll() is not None:
                        said = (process.stdout.read() if process.stdout else b"").decode(errors="replace")
                        raise BackupError(f"the scratch redis-server could not load the RDB: {said.strip()[-500:]}")
                    try:
                        if raw.ping():
                            break
                    except (redis_py.ConnectionError, redis_py.BusyLoadingError) as exc:
                        if time.monotonic() > deadline:
                            raise BackupError(
                                f"the scratch redis-server did not answer within {_START_TIMEOUT} s"
                            ) from exc
                        time.sleep(0.1)
                yield raw
            finally:
                raw.close()
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    @contextlib.contextmanager
    def scratch(self, local: Path, *, label: str, recorded: Figures) -> Iterator[Figures]:
        with self._server(local) as raw:
            yield redis_figures(raw, str(recorded.get("prefix", self.client.prefix)))

    def restore_into(self, local: Path, name: str, *, overwrite: bool) -> str:
        target = Path(name).expanduser()
        if target.exists() and not overwrite:
            raise RestoreRefusedError(f"{target} already exists: restore into a new file, or pass --overwrite")
        # A running Redis cannot take an RDB in place: it is loaded at start-up. Write the checked file where
        # the operator asked; they stop the server, put it at its `dir`/`dbfilename`, and start it again.
        shutil.copyfile(local, target)
        return (
            f"wrote the RDB to {target}: stop Redis, replace the file at its CONFIG GET dir/dbfilename "
            "with it (appendonly off, or remove the AOF), and start Redis again"
        )
