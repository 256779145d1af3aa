#!/usr/bin/env bash
# Make sure the real PostgreSQL, Redis and InfluxDB that the tests talk to are reachable, starting any that
# are not: through `docker compose` when a Docker engine answers, otherwise from Debian/Ubuntu packages.
# Idempotent: a server that already answers is left alone.
#
#   scripts/services.sh [up|status|stop-influxdb]
#
# Environment: PGHOST/PGPORT (127.0.0.1:5432), REDIS_PORT (6379), INFLUXDB_PORT (8086),
# INFLUXDB_RPC_PORT (8088: the loopback RPC address `influxd backup -portable` and `influxd restore` use),
# MARKETKEEPER_HOME (./var: where a locally started InfluxDB keeps its data and log).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
home=${MARKETKEEPER_HOME:-$here/var}
pg_host=${PGHOST:-127.0.0.1}
pg_port=${PGPORT:-5432}
redis_port=${REDIS_PORT:-6379}
influx_port=${INFLUXDB_PORT:-8086}
influx_rpc_port=${INFLUXDB_RPC_PORT:-8088}

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 4; i++)); do
    port_open "$2" "$3" && return 0
    sleep 0.25
  done
  log "$1 did not come up on $2:$3 within $4 s"
  return 1
}

influx_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$influx_port/ping" 2>/dev/null; }

have_docker() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  command -v apt-get >/dev/null || { log "no apt-get and no Docker engine: install $* yourself"; return 1; }
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  log "installing $* from the distribution's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  port_open "$pg_host" "$pg_port" && return 0
  if have_docker; then docker compose -f "$here/docker-compose.yaml" up -d postgres; wait_for PostgreSQL "$pg_host" "$pg_port" 60; return; fi
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL "$pg_host" "$pg_port" 60
  # A fresh cluster's postgres role has no password and host connections want one: give it the
  # development password the README and .env.example use. An existing password is never touched.
  if as_root su postgres -c "psql -tAc \"select rolpassword is null from pg_authid where rolname='postgres'\"" \
    2>/dev/null | grep -q t; then
    as_root su postgres -c "psql -qc \"alter role postgres password 'postgres'\""
  fi
}

start_redis() {
  port_open 127.0.0.1 "$redis_port" && return 0
  if have_docker; then docker compose -f "$here/docker-compose.yaml" up -d redis; wait_for Redis 127.0.0.1 "$redis_port" 30; return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$home/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --dir "$home/redis" --logfile "$home/redis/redis.log"
  wait_for Redis 127.0.0.1 "$redis_port" 30
}

start_influxdb() {
  influx_ready && return 0
  if have_docker; then docker compose -f "$here/docker-compose.yaml" up -d influxdb; wait_for InfluxDB 127.0.0.1 "$influx_port" 60; return; fi
  command -v influxd >/dev/null || apt_install influxdb
  local dir="$home/influxdb"
  mkdir -p "$dir"
  sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$influx_port#g" -e "s#@RPC_PORT@#$influx_rpc_port#g" \
    "$here/scripts/influxdb.conf.in" >"$dir/influxdb.conf"
  log "starting influxd (data in $dir, log in $dir/influxd.log)"
  # setsid: its own session, so stopping the shell or job that started it (a CI step, a terminal) never kills it.
  setsid nohup influxd -config "$dir/influxdb.conf" >>"$dir/influxd.log" 2>&1 &
  echo $! >"$dir/influxd.pid"
  local i
  for ((i = 0; i < 120; i++)); do influx_ready && return 0; sleep 0.25; done
  log "InfluxDB did not answer /ping on 127.0.0.1:$influx_port; see $dir/influxd.log"
  return 1
}

status() {
  local rc=0
  port_open "$pg_host" "$pg_port" && log "PostgreSQL up on $pg_host:$pg_port" || { log "PostgreSQL down"; rc=1; }
  port_open 127.0.0.1 "$redis_port" && log "Redis up on 127.0.0.1:$redis_port" || { log "Redis down"; rc=1; }
  influx_ready && log "InfluxDB up on 127.0.0.1:$influx_port" || { log "InfluxDB down"; rc=1; }
  port_open 127.0.0.1 "$influx_rpc_port" && log "InfluxDB RPC (backup/restore) up on 127.0.0.1:$influx_rpc_port" \
    || log "InfluxDB RPC (backup/restore) not answering on 127.0.0.1:$influx_rpc_port"
  return $rc
}

case "${1:-up}" in
  up)
    command -v curl >/dev/null || apt_install curl
    start_postgres
    start_redis
    start_influxdb
    status
    ;;
  status) status ;;
  stop-influxdb)
    pid_file="$home/influxdb/influxd.pid"
    [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null && rm -f "$pid_file" && log "influxd stopped"
    ;;
  *) echo "usage: $0 [up|status|stop-influxdb]" >&2; exit 2 ;;
esac
