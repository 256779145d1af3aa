"""The forkserver preload (``marketkeeper.airflow.preload``): it leaves what a task needs imported and the gate's
context built, and the process safe to fork (one thread, no socket), which is what ``scripts/airflow.sh`` relies
on when it names the module in ``mp_forkserver_preload``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys, threading
import marketkeeper.airflow.preload
from marketkeeper.quality.gx import _checkpoints
def target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the listing's own descriptor, closed by now
        return ""
sockets = [fd for fd in os.listdir("/proc/self/fd") if target(fd).startswith("socket:")]
print(json.dumps({
    "threads": threading.active_count(),
    "sockets": len(sockets),
    "gx": "great_expectations" in sys.modules,
    "context_built": _checkpoints.cache_info().currsize == 1,
    "services": "marketkeeper.services.batch" in sys.modules and "airflow.sdk" in sys.modules,
}))
"""


def test_preloading_imports_the_task_modules_and_leaves_one_thread_and_no_socket() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "GX_ANALYTICS_ENABLED": "False", "HOME": str(ROOT)},
        timeout=300,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"threads": 1, "sockets": 0, "gx": True, "context_built": True, "services": True}
