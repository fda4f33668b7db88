#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests and local runs.
#
#   deploy/local/postgres.sh start   install PostgreSQL if missing (Debian packages, needs root),
#                                    create a cluster under $GRIDFLOW_PG_DIR, start it, print URL
#   deploy/local/postgres.sh stop    stop it and delete the cluster
#   deploy/local/postgres.sh halt    stop the server, keep the cluster (fault tests)
#   deploy/local/postgres.sh resume  start it again
#   deploy/local/postgres.sh url     print the admin URL
#
# Settings: GRIDFLOW_PG_PORT (default 55432), GRIDFLOW_PG_DIR (default /tmp/gridflow-pg).
set -euo pipefail

PORT="${GRIDFLOW_PG_PORT:-55432}"
DIR="${GRIDFLOW_PG_DIR:-/tmp/gridflow-pg}"
URL="postgresql+asyncpg://gridflow@127.0.0.1:${PORT}/postgres"

pg_bin() {
  local v
  v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1 || true)"
  [ -n "$v" ] && echo "/usr/lib/postgresql/$v/bin"
}

as_owner() {
  # PostgreSQL refuses to run as root: run its tools as the postgres user when we are root.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_if_missing() {
  export DEBIAN_FRONTEND=noninteractive
  if ! { [ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ]; }; then
    if [ "$(id -u)" != 0 ]; then
      echo "postgres.sh: PostgreSQL is not installed and this is not root; install the" \
           "'postgresql' Debian package" >&2
      exit 1
    fi
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  # PostGIS is optional for gridflow; install it when we can (GRIDFLOW_PG_POSTGIS=0 to skip).
  local major; major="$(basename "$(dirname "$(pg_bin)")")"
  if [ "${GRIDFLOW_PG_POSTGIS:-1}" = 1 ] && [ "$(id -u)" = 0 ] \
      && [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ]; then
    echo "postgres.sh: installing PostGIS from Debian's packages" >&2
    apt-get install -y -qq "postgresql-$major-postgis-3" >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq "postgresql-$major-postgis-3" >/dev/null; } \
      || echo "postgres.sh: PostGIS could not be installed; continuing without it" >&2
  fi
}

start() {
  install_if_missing
  local bin; bin="$(pg_bin)"
  if [ -f "$DIR/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    echo "$URL"; return
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR/data" "$DIR/sock"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$DIR"; fi
  as_owner "$bin/initdb" -D "$DIR/data" -U gridflow --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = ${PORT}
unix_socket_directories = '${DIR}/sock'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  if ! as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null; then
    echo "postgres.sh: PostgreSQL did not start; log:" >&2
    cat "$DIR/server.log" >&2
    exit 1
  fi
  for _ in $(seq 1 60); do
    if as_owner "$bin/pg_isready" -h 127.0.0.1 -p "$PORT" -q; then echo "$URL"; return; fi
    sleep 1
  done
  echo "postgres.sh: PostgreSQL did not become ready; log:" >&2
  cat "$DIR/server.log" >&2
  exit 1
}

stop() {
  local bin; bin="$(pg_bin)"
  if [ -n "$bin" ] && [ -d "$DIR/data" ]; then
    as_owner "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}

halt() {
  as_owner "$(pg_bin)/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
}

resume() {
  as_owner "$(pg_bin)/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null
  echo "$URL"
}

case "${1:-}" in
  start) start ;;
  halt) halt ;;
  resume) resume ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|halt|resume|url" >&2; exit 2 ;;
esac
