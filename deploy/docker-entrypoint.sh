#!/bin/sh
# The image's entrypoint: one image, one role per container, chosen by the first argument.
# Each role execs its process, so it runs as PID 1 and receives the container's SIGTERM.
#
#   api        billing api on 0.0.0.0:${PORT:-8000} (REST API, Stripe webhook, /metrics)
#   webserver  dagster-webserver on 0.0.0.0:${PORT:-3000}
#   daemon     dagster-daemon (schedules, sensors, run queue)
#   relay      billing events relay --follow (outbox -> Kafka)
#   metrics    billing metrics serve on 0.0.0.0:${PORT:-9109} (for deployments without the API)
#   migrate    billing db upgrade, then billing catalog sync (a one-off job before the rest)
#   billing    any billing subcommand: billing invoice pdf INV-2026-000001 -o -
#   (other)    run as given, e.g. sh
set -eu

APP_HOME="${APP_HOME:-/app}"
WORKSPACE="$APP_HOME/workspace.yaml"

role="${1:-api}"
[ "$#" -gt 0 ] && shift

case "$role" in
    api)
        exec billing api --host 0.0.0.0 --port "${PORT:-8000}" "$@" ;;
    webserver)
        exec dagster-webserver --host 0.0.0.0 --port "${PORT:-3000}" -w "$WORKSPACE" "$@" ;;
    daemon)
        exec dagster-daemon run -w "$WORKSPACE" "$@" ;;
    relay)
        exec billing events relay --follow "$@" ;;
    metrics)
        exec billing metrics serve --host 0.0.0.0 --port "${PORT:-9109}" "$@" ;;
    migrate)
        billing db upgrade
        exec billing catalog sync ;;
    billing)
        exec billing "$@" ;;
    *)
        exec "$role" "$@" ;;
esac
