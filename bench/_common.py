"""What every benchmark in ``bench/`` shares: the machine line, best-of-N timing, PASS/MISS verdicts, and
throwaway PostgreSQL and InfluxDB databases. ``make bench`` skips files starting with ``_``.

    from _common import Target, best_of, print_machine, report, throwaway_influxdb, throwaway_postgresql, user_env

    print_machine("read benchmark")                  # first line of the output: cores, platform, load
    seconds, result = best_of(3, lambda: work())     # best wall time of 3 runs, and the last run's result
    with throwaway_postgresql() as url:              # a fresh database, dropped (WITH FORCE) on the way out
        ...                                          # url: postgresql+psycopg://postgres@127.0.0.1:5432/<name>
    with throwaway_influxdb() as client:             # marketkeeper InfluxDBClient on a fresh database
        ...
    ok = report([Target("reads / raw COPY", ours_rate / raw_rate, 0.5)])   # prints PASS/MISS lines
    Target("candles, one day", seconds, 1.0, below=True, unit=" s")        # a time must stay under its goal
    seconds = time_command([sys.executable, "-c", "pass"], env)            # a whole command, start-up included
    env = user_env(drop=("DATABASE_URL",))                                 # the environment a user's shell has

A ratio is always ``ours / fastest raw path measured in the same run`` (higher is better): :func:`fastest`
picks the denominator; name it in ``Target.against``. Scripts run as ``python bench/x.py``, so
``bench/`` is on ``sys.path`` and ``import _common`` works without packaging.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from marketkeeper.influxdb import InfluxDBClient

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
INFLUXDB_URL = os.environ.get("BENCH_INFLUXDB_URL", "http://127.0.0.1:8086")


def machine() -> str:
    """One line naming the machine: cores, platform, Python, and the load average when it started."""
    try:
        load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load unknown"
    return (
        f"machine: {os.cpu_count()} cores, {platform.platform()}, {platform.machine()}, "
        f"Python {platform.python_version()}, {load}"
    )


def print_machine(title: str) -> None:
    """Print ``title`` and the machine line: the first two lines of every benchmark's output."""
    print(title)
    print(machine(), flush=True)


def timed(action: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def best_of(repeat: int, action: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``repeat`` calls (this machine's load moves single runs by 20% and more), and the last
    call's result."""
    best = float("inf")
    result: T
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def fastest(paths: dict[str, float]) -> tuple[str, float]:
    """The name and seconds of the fastest of several measured raw paths (the honest denominator)."""
    name = min(paths, key=paths.__getitem__)
    return name, paths[name]


@dataclass
class Target:
    """A figure and the goal it must reach. A ratio (``unit="x"``, higher is better) must be ``>= goal``
    (``> goal`` when ``strict``); a time (``below=True``, e.g. ``unit=" s"``) must be ``< goal``."""

    label: str
    value: float
    goal: float
    strict: bool = False
    below: bool = False
    unit: str = "x"
    #: what a ratio is taken against, printed after it (e.g. "fastest raw: 5,000-line POSTs, gzip off")
    against: str = ""

    @property
    def met(self) -> bool:
        if self.below:
            return self.value < self.goal
        return self.value > self.goal if self.strict else self.value >= self.goal

    def line(self) -> str:
        verdict = "PASS" if self.met else "MISS"
        comparison = "<" if self.below else ">" if self.strict else ">="
        against = f"  [{self.against}]" if self.against else ""
        figure = f"{self.value:.2f}{self.unit}"
        return f"  {verdict}  {self.label:<50} {figure:>9}  (target {comparison} {self.goal:g}{self.unit}){against}"


def report(targets: list[Target]) -> bool:
    """Print one ``PASS``/``MISS`` line per target; True when every target is met."""
    print()
    for target in targets:
        print(target.line())
    return all(t.met for t in targets)


def user_env(*, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a command run whole, as a user's shell has it: without the variables whose
    names start with one of ``drop``, and without ``PYTHONDONTWRITEBYTECODE``. Some sandboxes set that one; it
    stops Python from keeping compiled bytecode, so every run would compile marketkeeper's modules from source
    again (about 0.14 s of a command's start-up here), which no installed or editable package does after its
    first run. The warm-up run of a timed command writes the cache, as a user's first run does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k != "PYTHONDONTWRITEBYTECODE"}
    env["GX_ANALYTICS_ENABLED"] = "False"
    return env


def time_command(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one run of a whole command, start-up included; its output is discarded, a non-zero exit
    raises (with its stderr)."""
    import subprocess

    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.decode(errors='replace').strip()}")
    return seconds


def unique_name(prefix: str) -> str:
    """A database name no concurrent run uses (several benchmarks may share the servers)."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def throwaway_postgresql(admin_url: str = PG_ADMIN_URL, prefix: str = "mk_bench") -> Iterator[str]:
    """A new empty PostgreSQL database for the block; yields its SQLAlchemy URL and drops it afterwards."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = unique_name(prefix)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        admin.dispose()


@contextlib.contextmanager
def throwaway_influxdb(
    url: str = INFLUXDB_URL, prefix: str = "mk_bench", **client_options: object
) -> Iterator[InfluxDBClient]:
    """A marketkeeper :class:`~marketkeeper.influxdb.InfluxDBClient` on a new database, dropped afterwards."""
    from marketkeeper.influxdb import InfluxDBClient

    client = InfluxDBClient(url, database=unique_name(prefix), **client_options)  # type: ignore[arg-type]
    try:
        client.create_database()
        yield client
    finally:
        try:
            client.drop_database()
        finally:
            client.close()


def raw_influxql(client: InfluxDBClient, query: str, repeat: int) -> dict[str, float]:
    """The raw path of an InfluxDB read: ``query`` POSTed once to ``/query`` and its answer drained, as CSV and
    as JSON, each with the answer gzipped and plain; best of ``repeat`` seconds for each (the caller compares
    against the fastest)."""
    import requests

    session = requests.Session()

    def one_query(accept: str, encoding: str) -> None:
        form = {"db": client.database, "epoch": "ns", "q": query}
        headers = {"Accept": accept, "Accept-Encoding": encoding}
        with session.post(f"{client.url}/query", data=form, headers=headers, stream=True) as r:
            r.raise_for_status()
            for _ in r.iter_content(1 << 20):
                pass

    try:
        return {
            f"one InfluxQL query, {accept}, {encoding}": best_of(
                repeat,
                lambda a=accept, e=encoding: one_query(a, e),  # type: ignore[misc]
            )[0]
            for accept in ("application/csv", "application/json")
            for encoding in ("gzip", "identity")
        }
    finally:
        session.close()
