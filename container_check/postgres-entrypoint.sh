#!/bin/sh
# Creates the cluster on first start from POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB,
# as the official image does, then runs the server in the foreground.
set -eu

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --pgdata="$PGDATA"
    rm -f "$password_file"
    # Other containers connect over the network, with the password.
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$database" != "postgres" ]; then
        # Listening on no address: nothing connects before the database exists.
        pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait start
        echo 'CREATE DATABASE :"database"' \
            | psql --username="$user" --dbname=postgres --set=ON_ERROR_STOP=1 \
                   --set=database="$database"
        pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop
    fi
fi

exec postgres -D "$PGDATA" -c listen_addresses='*'
