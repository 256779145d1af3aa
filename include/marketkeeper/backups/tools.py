"""Running the stores' own command-line tools (pg_dump, influxd, redis-cli ...): found on the PATH, passwords
only in the environment they get (never argv, which ``ps`` shows), their stderr redacted into the error."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from marketkeeper.backups.errors import BackupError
from marketkeeper.settings import redact

#: How much of a failed tool's stderr an error keeps (its last lines say what went wrong).
_STDERR_TAIL = 2000


def find_tool(name: str, *, candidates: Iterable[Path] = (), store: str) -> str:
    """The path of ``name``: the first of ``candidates`` that exists, else the PATH's.

    :raises BackupError: it is nowhere (``make test`` / ``scripts/test-tools.sh`` installs the tools).
    """
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{store} backup needs `{name}`, which is not installed (scripts/test-tools.sh installs it)")
    return found


def tool_env(extra: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment plus ``extra`` (``None`` values removed from it): how a tool gets a password."""
    env = dict(os.environ)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def describe_failure(args: Sequence[str], returncode: int, stderr: bytes | str, secrets: Iterable[str]) -> str:
    """One line: which tool failed, how, and the end of what it said (secrets masked)."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    said = " | ".join(lines)[-_STDERR_TAIL:] if lines else "no output"
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    return redact(f"{Path(args[0]).name} {how}: {said}", list(secrets))


def run_tool(
    args: Sequence[str], *, env: Mapping[str, str], secrets: Iterable[str] = (), timeout: float | None = None
) -> str:
    """Run a tool to completion; its stdout.

    :raises BackupError: it exited non-zero, was killed or timed out (with the end of its stderr).
    """
    secrets = list(secrets)
    try:
        # The store's own tool, arguments built here (no shell); passwords are in env, never argv.
        done = subprocess.run(list(args), env=dict(env), capture_output=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired as exc:
        raise BackupError(redact(f"{Path(args[0]).name} did not finish within {timeout} s", secrets)) from exc
    if done.returncode != 0:
        raise BackupError(describe_failure(args, done.returncode, done.stderr or done.stdout, secrets))
    return done.stdout.decode(errors="replace")


def tool_version(path: str, *flags: str) -> str:
    """The first line a tool prints for ``--version`` (or ``flags``)."""
    out = run_tool([path, *(flags or ("--version",))], env=tool_env({}), timeout=30)
    return out.strip().splitlines()[0] if out.strip() else "unknown"
