#!/usr/bin/env bash
# The real parts the integration tests drive, from Debian's packages, installed only when missing:
# PostgreSQL client tools (pg_dump/pg_restore of the server's major version), redis-tools (redis-cli --rdb,
# redis-check-rdb), influxd (portable backup/restore), Chromium and ChromeDriver (the UI page under Selenium)
# and Prometheus (scraping the metrics endpoint). Run by `make test`; safe to run again.
set -euo pipefail
log() { echo "[test-tools] $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }
missing=()
need() { command -v "$1" >/dev/null || missing+=("$2"); }
need pg_dump postgresql-client
need pg_restore postgresql-client
need redis-cli redis-tools
need redis-check-rdb redis-tools
need redis-server redis-server
need influxd influxdb
need chromium chromium
need chromedriver chromium-driver
need prometheus prometheus
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
command -v apt-get >/dev/null || { log "no apt-get: install ${missing[*]} yourself"; exit 1; }
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
log "installing ${pkgs[*]}"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
