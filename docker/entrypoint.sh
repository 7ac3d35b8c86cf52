#!/bin/sh
# The container's entrypoint. The first argument picks the role:
#   web (default)  serve the app with uvicorn; the periodic jobs run inside unless
#                  WORKER_AUTOSTART=false
#   worker         run only the periodic jobs (manage.py runworker)
#   migrate        apply the migrations, then exit
#   anything else  run as given, e.g. "python manage.py createsuperuser"; a name that is
#                  neither a role nor a command stops with one line listing the roles
# web, worker and migrate first wait, at most DATABASE_WAIT_SECONDS, for the database.
set -eu

role="${1:-web}"
if [ "$#" -gt 0 ]; then
    shift
fi

is_true() {
    case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

wait_for_database() {
    python manage.py wait_for_database --timeout "${DATABASE_WAIT_SECONDS:-60}"
}

# prometheus-client's multiprocess mode keeps each process's metrics in files in this
# directory. Files left by an earlier run of the container would be added to the new
# counters, so it starts empty.
prepare_metrics_directory() {
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -maxdepth 1 -type f -name '*.db' -delete
    fi
}

case "$role" in
    web)
        wait_for_database
        if is_true "${MIGRATE_ON_START:-false}"; then
            python manage.py migrate --noinput
        fi
        prepare_metrics_directory
        # With several workers, uvicorn's own process logs before Django sets logging up:
        # give it the same configuration, so that every line has the same format.
        log_config="$(mktemp --suffix=.json)"  # uvicorn reads .json files as dictConfig
        python -m config.logging > "$log_config"
        # exec: uvicorn becomes the container's main process and receives its SIGTERM.
        # The request middleware logs each request once, so uvicorn's access log is off.
        # httptools and uvloop, with the project's protocol: slow request headers time out.
        exec uvicorn config.asgi:application \
            --log-config "$log_config" \
            --host 0.0.0.0 \
            --port "${PORT:-8000}" \
            --workers "${WEB_CONCURRENCY:-1}" \
            --lifespan on \
            --http config.server:HeaderTimeoutProtocol \
            --loop uvloop \
            --proxy-headers \
            --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
            --no-access-log \
            "$@"
        ;;
    worker)
        wait_for_database
        prepare_metrics_directory
        exec python manage.py runworker "$@"
        ;;
    migrate)
        wait_for_database
        exec python manage.py migrate --noinput "$@"
        ;;
    *)
        if ! command -v "$role" > /dev/null 2>&1; then
            echo "Unknown role '$role': use web (the default), worker or migrate," \
                "or a command to run, such as python manage.py shell." >&2
            exit 2
        fi
        exec "$role" "$@"
        ;;
esac
