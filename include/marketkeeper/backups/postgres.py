"""The ledger's backup: ``pg_dump --format=custom`` with the client tools of the server's major version.

The dump and the figures (per-table row counts and an md5 of every row's text in primary-key order) see the
same snapshot: a ``REPEATABLE READ`` transaction exports its snapshot, ``pg_dump --snapshot`` imports it, and
the figures are computed in that transaction while the dump streams. A drill restores into a new database
with ``pg_restore`` and computes the same figures there. Passwords reach the tools in ``PGPASSWORD`` only.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from marketkeeper.backups.base import Figures, StoreBackup
from marketkeeper.backups.destination import CHUNK, HashingWriter
from marketkeeper.backups.errors import BackupError, BackupNotSupportedError, RestoreRefusedError
from marketkeeper.backups.tools import describe_failure, find_tool, run_tool, tool_env, tool_version
from marketkeeper.settings import normalize_database_url

__all__ = ["PostgresBackup"]

# Every ordinary table outside the system schemas, with its primary-key columns in key order.
_TABLES = sa.text(
    """
    SELECT n.nspname AS schema, c.relname AS name,
           coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                       FROM pg_index i
                       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                      WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS key
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_%'
     ORDER BY 1, 2
    """
)


def table_figures(connection: sa.Connection) -> Figures:
    """Row count and content md5 of every table the connection's transaction sees.

    The md5 is over the md5 of each row's text, in primary-key order (every column's order, for a table
    without one), so two databases agree exactly when every row of every table does.
    """
    quote = connection.dialect.identifier_preparer.quote
    figures: dict[str, dict[str, Any]] = {}
    for schema, name, key in connection.execute(_TABLES):
        # Identifiers come from the catalog, quoted; nothing here is user input.
        table = f"{quote(schema)}.{quote(name)}"
        order = ", ".join(f"t.{quote(column)}" for column in key) if key else "t::text"
        digest_sql = f"md5(coalesce(string_agg(md5(t::text), '' ORDER BY {order}), ''))"
        statement = f"SELECT count(*), {digest_sql} FROM {table} t"  # noqa: S608
        rows, digest = connection.execute(sa.text(statement)).one()
        figures[f"{schema}.{name}"] = {"rows": int(rows), "md5": digest}
    return {"tables": figures}


class PostgresBackup(StoreBackup):
    """Backs up, restores and drills one PostgreSQL database.

    :param url: the ledger's SQLAlchemy URL (may hold a password; it goes to the tools as ``PGPASSWORD``).
    """

    store: ClassVar[str] = "ledger"
    kind: ClassVar[str] = "pg_dump-custom"
    suffix: ClassVar[str] = ".dump"

    def __init__(self, url: str) -> None:
        parsed = make_url(normalize_database_url(url))
        if parsed.get_backend_name() != "postgresql":
            raise BackupNotSupportedError(
                f"the ledger on {parsed.get_backend_name()} cannot be backed up with pg_dump: "
                "backups cover a PostgreSQL or an embedded SQLite ledger"
            )
        if not parsed.database:
            raise BackupError("the ledger URL names no database to back up")
        self.url = parsed
        self._major: int | None = None

    # --- connections and tools -------------------------------------------------------------------------------

    def _engine(self, database: str | None = None) -> Engine:
        from marketkeeper.ledger import create_ledger_engine

        url = self.url if database is None else self.url.set(database=database)
        # No statement timeout: the figures of a large table take as long as they take.
        return create_ledger_engine(
            url.set(
                query={**url.query, "statement_timeout": "0", "idle_in_transaction_session_timeout": "0"}
            ).render_as_string(hide_password=False),
            poolclass=sa.pool.NullPool,
        )

    def _env(self, database: str | None = None) -> dict[str, str]:
        url: URL = self.url
        sslmode = url.query.get("sslmode")
        return tool_env(
            {
                "PGHOST": url.host or "127.0.0.1",
                "PGPORT": str(url.port or 5432),
                "PGUSER": url.username,
                "PGPASSWORD": url.password if isinstance(url.password, str) else None,
                "PGDATABASE": database or url.database,
                "PGSSLMODE": sslmode if isinstance(sslmode, str) else None,
                "PGCONNECT_TIMEOUT": "10",
            }
        )

    @property
    def _secrets(self) -> list[str]:
        return [self.url.password] if isinstance(self.url.password, str) and self.url.password else []

    def server_major(self) -> int:
        if self._major is None:
            engine = self._engine()
            try:
                with engine.connect() as conn:
                    self._major = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
            except sa.exc.SQLAlchemyError as exc:
                raise BackupError(f"ledger backup cannot reach PostgreSQL: {exc.__cause__ or exc}") from exc
            finally:
                engine.dispose()
        return self._major

    def _tool(self, name: str) -> str:
        major = self.server_major()
        path = find_tool(name, candidates=[Path(f"/usr/lib/postgresql/{major}/bin/{name}")], store="ledger")
        version = tool_version(path)
        tool_major = next((int(w.split(".")[0]) for w in version.split() if w[:1].isdigit()), None)
        if tool_major != major:
            raise BackupError(
                f"{name} is version {tool_major} but the ledger's PostgreSQL is {major}: "
                f"install postgresql-client-{major}"
            )
        return path

    def versions(self) -> tuple[str, str]:
        tool = tool_version(self._tool("pg_dump"))
        engine = self._engine()
        try:
            with engine.connect() as conn:
                server = str(conn.execute(sa.text("SELECT version()")).scalar_one()).split(",")[0]
        finally:
            engine.dispose()
        return tool, server

    # --- backup ----------------------------------------------------------------------------------------------

    def dump(self, sink: HashingWriter) -> Figures:
        pg_dump = self._tool("pg_dump")
        engine = self._engine()
        try:
            with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
                snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
                args = [pg_dump, "--format=custom", f"--snapshot={snapshot}", "--no-password"]
                process = subprocess.Popen(  # noqa: S603 - a fixed tool, arguments ours
                    args, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
                )
                stderr: list[bytes] = []
                reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
                reader.start()
                # The figures are computed in the exporting transaction while pg_dump streams.
                figures: dict[str, Any] = {}
                worker = threading.Thread(target=self._figures_into, args=(conn, figures))
                worker.start()
                try:
                    assert process.stdout is not None
                    while chunk := process.stdout.read(CHUNK):
                        sink.write(chunk)
                    returncode = process.wait()
                finally:
                    if process.poll() is None:  # the sink failed: stop the dump
                        process.kill()
                        process.wait()
                    worker.join()
                    reader.join(timeout=10)
                if returncode != 0:
                    raise BackupError(describe_failure(args, returncode, b"".join(stderr), self._secrets))
                if "error" in figures:
                    raise BackupError(f"ledger backup: computing the table figures failed: {figures['error']}")
                result: Figures = figures["result"]
                return result
        except sa.exc.SQLAlchemyError as exc:
            raise BackupError(f"ledger backup: PostgreSQL failed: {str(exc).splitlines()[0]}") from exc
        finally:
            engine.dispose()

    @staticmethod
    def _figures_into(conn: sa.Connection, out: dict[str, Any]) -> None:
        try:
            out["result"] = table_figures(conn)
        except Exception as exc:  # handed to the dumping thread, which raises it
            out["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    # --- restore ---------------------------------------------------------------------------------------------

    def _database_exists(self, conn: sa.Connection, name: str) -> bool:
        found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
        return found.first() is not None

    def _admin(self, statement: str) -> None:
        engine = self._engine()
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(statement))
        finally:
            engine.dispose()

    def _quote(self, name: str) -> str:
        return sa.dialects.postgresql.dialect().identifier_preparer.quote(name)

    def _pg_restore(self, local: Path, database: str, *extra: str) -> None:
        args = [self._tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", *extra]
        run_tool([*args, f"--dbname={database}", str(local)], env=self._env(database), secrets=self._secrets)

    @contextlib.contextmanager
    def scratch(self, local: Path, *, label: str, recorded: Figures) -> Iterator[Figures]:
        name = f"{self.url.database}_drill_{label}_{uuid.uuid4().hex[:6]}"[:63]
        self._admin(f"CREATE DATABASE {self._quote(name)}")
        try:
            self._pg_restore(local, name)
            engine = self._engine(name)
            try:
                with engine.connect() as conn, conn.begin():
                    yield table_figures(conn)
            finally:
                engine.dispose()
        finally:
            self._admin(f"DROP DATABASE IF EXISTS {self._quote(name)} WITH (FORCE)")

    def restored_ledger_url(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def restore_into(self, local: Path, name: str, *, overwrite: bool) -> str:
        engine = self._engine()
        try:
            with engine.connect() as conn:
                exists = self._database_exists(conn, name)
        finally:
            engine.dispose()
        if exists and not overwrite:
            raise RestoreRefusedError(
                f"database {name!r} already exists on {self.url.host}: restore into a new name, "
                "or pass --overwrite to replace its contents"
            )
        if exists:
            self._pg_restore(local, name, "--clean", "--if-exists", "--single-transaction")
            return f"replaced the contents of database {name!r} on {self.url.host}"
        self._admin(f"CREATE DATABASE {self._quote(name)}")
        try:
            self._pg_restore(local, name, "--single-transaction")
        except BaseException:
            self._admin(f"DROP DATABASE IF EXISTS {self._quote(name)} WITH (FORCE)")
            raise
        return f"restored into the new database {name!r} on {self.url.host}"
