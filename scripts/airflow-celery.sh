#!/usr/bin/env bash
# `make up-celery`: this project under CeleryExecutor on one machine, every port on loopback: api-server (UI on
# http://127.0.0.1:8080), scheduler, dag-processor, triggerer and MARKETKEEPER_CELERY_WORKERS (2) Celery
# workers with distinct hostnames, concurrency MARKETKEEPER_CELERY_CONCURRENCY (2) each.
#
#   scripts/airflow-celery.sh          # init, then run everything until Ctrl-C (or until a component dies)
#   scripts/airflow-celery.sh init     # only: create the PostgreSQL databases if missing, migrate, set pools
#
# Broker: Redis DB 1, never the cache's (REDIS_URL, DB 0). Metadata DB and Celery result backend: the
# PostgreSQL database `airflow`; ledger: DATABASE_URL (PostgreSQL database `marketkeeper` by default), since a
# task may run on any worker (the SQLite ledger and `files:` sources need MARKETKEEPER_SHARED_FILESYSTEM=1).
# Components go through scripts/airflow.sh, so connections come from DATABASE_URL/INFLUXDB_URL/REDIS_URL as
# for `make up`. Logs: $AIRFLOW_HOME/celery/<component>.log (AIRFLOW_HOME = .airflow unless
# MARKETKEEPER_AIRFLOW_HOME says otherwise), task logs under $AIRFLOW_HOME/logs. Every default below can be
# overridden from the environment; docker-compose.yaml sets the same names (tests/unit/test_compose.py).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
python=${PYTHON:-$project/.venv/bin/python}
[ -x "$python" ] || python=python3
home=${MARKETKEEPER_AIRFLOW_HOME:-$project/.airflow}

export AIRFLOW__CORE__EXECUTOR=${AIRFLOW__CORE__EXECUTOR:-CeleryExecutor}
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-postgresql+psycopg2://postgres:postgres@127.0.0.1:5432/airflow}
export AIRFLOW__CELERY__BROKER_URL=${AIRFLOW__CELERY__BROKER_URL:-redis://127.0.0.1:6379/1}
export AIRFLOW__CELERY__RESULT_BACKEND=${AIRFLOW__CELERY__RESULT_BACKEND:-db+$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres:postgres@127.0.0.1:5432/marketkeeper}
export AIRFLOW__API__HOST=${AIRFLOW__API__HOST:-127.0.0.1}
export AIRFLOW__API__PORT=${AIRFLOW__API__PORT:-8080}
export AIRFLOW__API__BASE_URL=${AIRFLOW__API__BASE_URL:-http://127.0.0.1:$AIRFLOW__API__PORT}
# Workers reach the api-server's Execution API at this address (on another machine: a routable one).
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-$AIRFLOW__API__BASE_URL/execution/}
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-8794}
export GX_ANALYTICS_ENABLED=False
workers=${MARKETKEEPER_CELERY_WORKERS:-2}
concurrency=${MARKETKEEPER_CELERY_CONCURRENCY:-2}
# Worker N serves its task logs on port base+N: two workers on one machine cannot share 8793.
log_port_base=${MARKETKEEPER_WORKER_LOG_PORT_BASE:-8800}

fail() { echo "airflow-celery: $*" >&2; exit 2; }

# The broker's DB index must not be the cache's: a cache flush would drop queued tasks.
if [ -n "${REDIS_URL:-}" ] && [ "${REDIS_URL%/}" = "${AIRFLOW__CELERY__BROKER_URL%/}" ]; then
  fail "AIRFLOW__CELERY__BROKER_URL and REDIS_URL name the same Redis DB; give the broker its own (e.g. /1)"
fi
case $AIRFLOW__DATABASE__SQL_ALCHEMY_CONN in
  postgresql*) ;;
  *) fail "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN must be PostgreSQL under CeleryExecutor (workers on other machines)" ;;
esac

create_database() { # URL: create its PostgreSQL database if missing, through the server's `postgres` database
  "$python" - "$1" <<'PY'
import sys

import sqlalchemy as sa
from sqlalchemy.engine import make_url

url = make_url(sys.argv[1].removeprefix("db+"))
admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
try:
    with admin.connect() as conn:
        if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}) is None:
            conn.execute(sa.text(f"CREATE DATABASE {admin.dialect.identifier_preparer.quote(url.database)}"))
            print(f"created PostgreSQL database {url.database!r}")
except sa.exc.OperationalError as exc:
    sys.exit(f"airflow-celery: PostgreSQL at {url.host}:{url.port or 5432} did not answer: {exc.orig}")
finally:
    admin.dispose()
PY
}

init() {
  create_database "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
  case $DATABASE_URL in
    postgresql*) create_database "$DATABASE_URL" ;;
  esac
  "$python" -m marketkeeper db upgrade
  "$here/airflow-init.sh"
}

if [ "${1:-up}" = init ]; then
  init
  exit 0
fi
[ "${1:-up}" = up ] || fail "usage: $0 [up|init]"

logs=$home/celery
mkdir -p "$logs"
init >"$logs/init.log" 2>&1 || { tail -n 25 "$logs/init.log" >&2; fail "init failed (log: $logs/init.log)"; }

names=()
pids=()
start() { # NAME COMMAND...: run in a session of its own (so a signal reaches all of its children), log to NAME.log
  local name=$1
  shift
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  names+=("$name")
  pids+=("$!")
  echo "$!" >"$logs/$name.pid"
}

stop() {
  trap - INT TERM EXIT
  local i pid deadline
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  [ "${#pids[@]}" -eq 0 ] || echo "airflow-celery: stopping" >&2
  # Celery workers finish (or hand back) their running tasks on SIGTERM: give them a while.
  deadline=$((SECONDS + ${MARKETKEEPER_STOP_GRACE:-30}))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  done
  for i in "${!pids[@]}"; do
    kill -KILL -- "-${pids[$i]}" 2>/dev/null || true
    rm -f "$logs/${names[$i]}.pid"
  done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for component in api-server scheduler dag-processor triggerer; do
  start "$component" "$here/airflow.sh" "$component"
done
for n in $(seq 1 "$workers"); do
  # A worker's hostname is how Airflow names where a task ran; %h is this machine's name.
  AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$((log_port_base + n)) \
    start "worker-$n" "$here/airflow.sh" celery worker --celery-hostname "worker-$n@%h" --concurrency "$concurrency"
done

echo "CeleryExecutor: UI on $AIRFLOW__API__BASE_URL, $workers workers x $concurrency, broker $AIRFLOW__CELERY__BROKER_URL"
echo "logs in $logs/ (Ctrl-C stops everything)"
# A dead worker is a lost machine: the others carry on and Airflow retries its tasks (its pid file goes). Any
# other component dying stops everything.
while true; do
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null && continue
    name=${names[$i]}
    echo "airflow-celery: $name exited; last lines of $logs/$name.log:" >&2
    tail -n 25 "$logs/$name.log" >&2
    case $name in
      worker-*) rm -f "$logs/$name.pid"; unset "pids[$i]" "names[$i]" ;;
      *) exit 1 ;;
    esac
  done
  case " ${names[*]} " in
    *" worker-"*) ;;
    *) echo "airflow-celery: no worker left" >&2; exit 1 ;;
  esac
  sleep 2
done
