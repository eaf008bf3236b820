#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks.
#
#   scripts/pg.sh start DIR [PORT] [--fast]   initdb DIR/data (first time), start it on
#                                             127.0.0.1:PORT (default: a free port),
#                                             create database "guardline", print the URL
#   scripts/pg.sh stop DIR                    stop it (fast shutdown)
#   scripts/pg.sh url DIR                     print the URL of a started server
#
# The cluster trusts every local connection and listens on 127.0.0.1 only:
# it is for tests, never for data anyone wants to keep.  initdb refuses to
# run as root, so as root the server runs as the `postgres` user (DIR is
# chowned to it; its parent must be traversable by that user, e.g. under
# /tmp).  --fast turns fsync and full_page_writes off (tests that check the
# receiver's logic, not PostgreSQL's durability); without it the server
# keeps PostgreSQL's durable defaults (benchmarks).
#
# Binaries come from $PG_BIN, else `pg_config --bindir`, else the newest
# /usr/lib/postgresql/*/bin (Debian's layout), else $PATH.
set -euo pipefail

usage() { echo "usage: $0 start DIR [PORT] [--fast] | stop DIR | url DIR" >&2; exit 2; }

find_bin() {
  if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then echo "$PG_BIN"; return; fi
  if command -v pg_config >/dev/null 2>&1; then
    local d; d="$(pg_config --bindir 2>/dev/null || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  fi
  # the highest version number (a plain glob would sort 9.6 after 15)
  local best
  best="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V | tail -1 || true)"
  if [ -n "$best" ] && [ -x "$best/initdb" ]; then echo "$best"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  echo "pg.sh: PostgreSQL server binaries not found (install the postgresql package" \
       "or set PG_BIN)" >&2
  exit 3
}

# Run a command as the cluster's owner: ourselves, or postgres when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || usage
case "$cmd" in
  start)
    shift 2
    port=""; fast=0
    for a in "$@"; do
      case "$a" in
        --fast) fast=1 ;;
        *[!0-9]*|"") usage ;;
        *) port="$a" ;;
      esac
    done
    bin="$(find_bin)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || { echo "pg.sh: running as root needs a postgres user" >&2; exit 3; }
      chown postgres "$dir"
      if ! runuser -u postgres -- test -w "$dir"; then
        echo "pg.sh: user postgres cannot write $dir (is a parent directory private?)" >&2
        exit 3
      fi
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
          as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
            --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        }
    fi
    [ -n "$port" ] || port="$(free_port)"
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
    opts="$opts -c max_connections=200"
    if [ "$fast" = 1 ]; then
      opts="$opts -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start \
      >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
    if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'guardline'" | grep -q 1; then
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres guardline
    fi
    url="postgresql://postgres@127.0.0.1:$port/guardline"
    echo "$url" >"$dir/url"
    echo "$url"
    ;;
  stop)
    bin="$(find_bin)"
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    fi
    ;;
  url)
    cat "$dir/url"
    ;;
  *) usage ;;
esac
