#!/usr/bin/env bash
# Starts a PostgreSQL server of its own for the PostgresStore tests, and
# prints its connection string (the only thing on stdout):
#
#   export MYRIAD_TEST_POSTGRES="$(bash scripts/start-postgres.sh)"
#
# Idempotent: installs PostgreSQL if missing (Debian's package), creates the
# cluster in $MYRIAD_PG_DIR (default /tmp/myriad-postgres) on first use,
# starts it on 127.0.0.1:$MYRIAD_PG_PORT (default 54329) unless it runs,
# creates the role and database `myriad` (password `myriad`) if absent. It
# leaves the system's own cluster alone. Stop it with
#   runuser -u postgres -- "$(pg_config --bindir)/pg_ctl" -D /tmp/myriad-postgres stop
set -euo pipefail

dir="${MYRIAD_PG_DIR:-/tmp/myriad-postgres}"
port="${MYRIAD_PG_PORT:-54329}"
log() { echo "start-postgres: $*" >&2; }

bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ]; then
            echo "$d"
        fi
    done | sort -V | tail -n 1
}

bin="$(bindir)"
if [ -z "$bin" ]; then
    log "PostgreSQL is not installed: installing it"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bin="$(bindir)"
    [ -n "$bin" ] || { log "no initdb after installing postgresql"; exit 1; }
fi

# The server refuses to run as root: the cluster belongs to `postgres`.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ ! -s "$dir/PG_VERSION" ]; then
    log "creating a cluster in $dir"
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir"
    chmod 700 "$dir"
    as_pg "$bin/initdb" -D "$dir" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --no-locale >"$dir.initdb.log" 2>&1 \
        || { cat "$dir.initdb.log" >&2; exit 1; }
fi

if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    log "starting the server on 127.0.0.1:$port"
    as_pg "$bin/pg_ctl" -D "$dir" -w -t 60 -l "$dir/server.log" \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >&2 \
        || { tail -n 30 "$dir/server.log" >&2; exit 1; }
fi

psql_admin() { as_pg "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -tAq -v ON_ERROR_STOP=1 "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'myriad'")" != 1 ]; then
    log "creating the role myriad"
    psql_admin -c "CREATE ROLE myriad LOGIN PASSWORD 'myriad'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'myriad'")" != 1 ]; then
    log "creating the database myriad"
    psql_admin -c "CREATE DATABASE myriad OWNER myriad"
fi

echo "host=127.0.0.1 port=$port user=myriad password=myriad dbname=myriad"
