"""Running ``scripts/airflow.sh`` from tests: a throwaway Airflow home, and only the store variables given."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE_ENV = (
    "DATABASE_URL",
    "INFLUXDB_URL",
    "INFLUXDB_TOKEN",
    "INFLUXDB_USERNAME",
    "INFLUXDB_PASSWORD",
    "INFLUXDB_BUCKET",
    "REDIS_URL",
)


def run_airflow(
    home: Path, store_env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``scripts/airflow.sh ARGS`` with Airflow and marketkeeper homes under ``home``; stores from ``store_env``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in STORE_ENV and not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    env.pop("AIRFLOW_HOME", None)
    env.update(
        MARKETKEEPER_AIRFLOW_HOME=str(home / "airflow"),
        MARKETKEEPER_HOME=str(home / "marketkeeper"),
        **store_env,
    )
    result = subprocess.run(
        [str(ROOT / "scripts" / "airflow.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check:
        assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result
