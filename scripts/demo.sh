#!/usr/bin/env bash
# `make demo`: the main job, once, on whatever stores the environment names (embedded defaults otherwise):
# migrate the ledger, initialise Airflow's own metadata DB, run every DAG once with `airflow dags test`,
# and print a short summary. Logs of each step go to $MARKETKEEPER_HOME/log/.
set -euo pipefail
cd "$(dirname "$0")/.."
export MARKETKEEPER_HOME=${MARKETKEEPER_HOME:-$PWD/var}
logs="$MARKETKEEPER_HOME/log"
mkdir -p "$logs"

step() { printf '\n== %s\n' "$*"; }
quiet() { # log-file command...: run, keep the output in the log, show its tail only on failure
  local log=$1; shift
  if ! "$@" >"$log" 2>&1; then
    echo "failed: $*  (last lines of $log)" >&2
    tail -n 25 "$log" >&2
    return 1
  fi
}

step "stores"
marketkeeper health

step "ledger schema"
marketkeeper db upgrade

step "Airflow metadata DB (.airflow/)"
quiet "$logs/airflow-init.log" scripts/airflow-init.sh
echo "migrated; pool exchange_api ready"

mapfile -t dag_ids < <(scripts/airflow.sh dags list --local -o json 2>"$logs/airflow-dags-list.log" |
  python -c 'import json, sys; print("\n".join(sorted(d["dag_id"] for d in json.load(sys.stdin))))')
[ ${#dag_ids[@]} -gt 0 ] || { echo "no DAGs found; see $logs/airflow-dags-list.log" >&2; exit 1; }

results=()
failed=0
for dag_id in "${dag_ids[@]}"; do
  step "airflow dags test $dag_id"
  started=$SECONDS
  if quiet "$logs/dag-$dag_id.log" scripts/airflow.sh dags test "$dag_id"; then
    results+=("$(printf '%-22s success  %4ss' "$dag_id" $((SECONDS - started)))")
  else
    results+=("$(printf '%-22s FAILED   %4ss  (log: %s)' "$dag_id" $((SECONDS - started)) "$logs/dag-$dag_id.log")")
    failed=1
  fi
done

step "summary"
echo "ledger:   $(marketkeeper db current)"
printf '%s\n' "${results[@]}"
exit $failed
