#!/usr/bin/env bash
# Prepare the local Airflow of this project: migrate its metadata DB and create the pools the DAGs use.
# Idempotent; `make demo`, `make up` and the tests run it. (Astro CLI users get the same pool from
# airflow_settings.yaml.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/airflow.sh" db migrate
# Exchange API calls (ingestion, backfills, exchange balances) share this pool so ccxt's rate limits hold.
"$here/airflow.sh" pools set exchange_api 4 "Exchange API calls (ccxt)"
