#!/bin/sh
# Starts as root only to read the password secret (root's, group 10001,
# 0640), then runs everything as the postgres user.
set -eu
: "${POSTGRES_USER:=ward}" "${POSTGRES_DB:=ward}" "${PGPORT:=5432}" "${LISTEN_ADDRESSES:=127.0.0.1}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -r "${POSTGRES_PASSWORD_FILE:-}" ] || { echo "postgres: POSTGRES_PASSWORD_FILE must name a readable file" >&2; exit 1; }
  password=$(mktemp)
  cat "$POSTGRES_PASSWORD_FILE" >"$password"
  chown postgres "$password"
  as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$password" \
    --auth-host=scram-sha-256 --auth-local=trust >/dev/null
  rm -f "$password"
  # Other containers of the stack connect over its network, by password.
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p $PGPORT" -w start >/dev/null
  as_postgres createdb -p "$PGPORT" -U "$POSTGRES_USER" "$POSTGRES_DB"
  as_postgres pg_ctl -D "$PGDATA" -w stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  postgres -D "$PGDATA" -c listen_addresses="$LISTEN_ADDRESSES" -p "$PGPORT"
