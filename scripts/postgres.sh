#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL cluster for the tests and print its SQLAlchemy URL.
#
#   export LABYARD_TEST_POSTGRES_URL="$(./scripts/postgres.sh)"
#
# Idempotent: the first run creates the cluster under $LABYARD_TEST_PG_DIR (default
# /tmp/labyard-test-postgres) and database `labyard_test`; later runs find it running, or
# start it again (after a reboot, say). It listens on a unix socket in that folder only, so
# it never clashes with another PostgreSQL on the host. Durability is off: it is for tests.
# `./scripts/postgres.sh stop` stops it. Needs the `postgresql` package (scripts/setup.sh).
set -euo pipefail

PGDIR="${LABYARD_TEST_PG_DIR:-/tmp/labyard-test-postgres}"
DATA="$PGDIR/data"
SOCKET="$PGDIR/socket"
DB=labyard_test
PORT=5432  # only names the socket file; nothing listens on TCP

BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$BIN" ] || [ ! -x "$BIN/pg_ctl" ]; then
  echo "postgres.sh: PostgreSQL server binaries not found; run scripts/setup.sh" >&2
  exit 1
fi

# initdb and postgres refuse to run as root: run them as the `postgres` system user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

mkdir -p "$PGDIR"
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$PGDIR"
fi
chmod 700 "$PGDIR"

# One runner at a time: two test runs starting together must not both run initdb.
exec 9>"$PGDIR.lock"
flock -w 120 9

if [ "${1:-}" = stop ]; then
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 9>&- || true
  exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$PGDIR/initdb.log" 2>&1 || {
    cat "$PGDIR/initdb.log" >&2
    echo "postgres.sh: initdb failed" >&2
    exit 1
  }
  cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$SOCKET'
port = $PORT
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
fi
as_pg mkdir -p "$SOCKET"

start_unless_running() {
  if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 60 start >/dev/null 9>&- || {
      tail -n 30 "$PGDIR/server.log" >&2 || true
      echo "postgres.sh: the server did not start (log: $PGDIR/server.log)" >&2
      exit 1
    }
  fi
}
start_unless_running

psql_() { psql -X -q -h "$SOCKET" -p "$PORT" -U postgres "$@"; }
deadline=$((SECONDS + 60))
until psql_ -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; do
  # A server that was killed may still have been winding down when we looked: look again.
  start_unless_running
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "postgres.sh: the server does not answer on $SOCKET" >&2
    exit 1
  fi
  sleep 0.2
done
if [ "$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  psql_ -d postgres -c "CREATE DATABASE $DB" >/dev/null
fi

echo "postgresql+psycopg://postgres@/$DB?host=$SOCKET&port=$PORT"
