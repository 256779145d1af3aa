#!/usr/bin/env bash
# Run the Airflow CLI against this project: metadata DB and logs in .airflow/, DAGs from dags/, plugins from
# plugins/, and the marketkeeper_* connections derived from the same DATABASE_URL / INFLUXDB_URL / REDIS_URL the
# `marketkeeper` CLI reads (the embedded SQLite ledger when DATABASE_URL is unset).
#
#   scripts/airflow.sh db migrate
#   scripts/airflow.sh dags test stores_check
#   scripts/airflow.sh standalone      # UI on http://localhost:8080; the admin password is printed at start-up
#                                      # and kept in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
#
# MARKETKEEPER_AIRFLOW_HOME overrides the Airflow home (tests use a temporary one). An AIRFLOW_CONN_* variable
# that is already set is left alone.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$project/.venv/bin/python}
[ -x "$python" ] || python=python3

export AIRFLOW_HOME=${MARKETKEEPER_AIRFLOW_HOME:-$project/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$project/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$project/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}
export GX_ANALYTICS_ENABLED=False
# The LocalExecutor's workers are forked from a forkserver that imported Great Expectations, pandas, the drivers
# and marketkeeper once (include/marketkeeper/airflow/preload.py), so a task process (forked from a worker)
# starts with them instead of paying ~5 s of imports. Only the scheduler's executor uses it.
export AIRFLOW__SCHEDULER__MP_START_METHOD=${AIRFLOW__SCHEDULER__MP_START_METHOD:-forkserver}
export AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=${AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD:-marketkeeper.airflow.preload}
# A laptop's UI listens on loopback only unless asked otherwise.
export AIRFLOW__API__HOST=${AIRFLOW__API__HOST:-127.0.0.1}
# Settings() resolves the embedded ledger under MARKETKEEPER_HOME relative to the working directory: pin it so
# the scheduler, the workers and the CLI all find the same file.
export MARKETKEEPER_HOME=${MARKETKEEPER_HOME:-$project/var}
mkdir -p "$AIRFLOW_HOME" "$MARKETKEEPER_HOME"

# The derivation (URL parsing, quoting) lives in Python; eval only sees shlex-quoted export lines.
exports=$("$python" -m marketkeeper.airflow.localenv)
eval "$exports"

# `standalone` starts its components as `airflow ...` subprocesses: the venv's airflow must come first on PATH.
bindir=$(dirname "$python")
[ -x "$bindir/airflow" ] && export PATH="$bindir:$PATH"
exec airflow "$@"
