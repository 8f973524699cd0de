#!/bin/sh
# The alertmanager service's entrypoint (docker-compose.yml): Alertmanager reads no
# environment variables, so this fills the ${PAYSAGA_*} placeholders of alertmanager.yml
# (beside this script) from the environment, then runs Alertmanager on the result with the
# arguments it was given. Without PAYSAGA_ADMIN_EMAIL or PAYSAGA_SMTP_HOST there is no one to
# mail or no way to: Alertmanager runs with a receiver that mails nobody, and says so, as the
# worker's escalations are then logged and metered only (CONTRACT).
set -eu

template="$(dirname "$0")/alertmanager.yml"
config="${PAYSAGA_ALERTMANAGER_CONFIG:-/tmp/alertmanager.yml}"

# sed's replacement treats \, & and the delimiter specially.
literal() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }

if [ -n "${PAYSAGA_ADMIN_EMAIL:-}" ] && [ -n "${PAYSAGA_SMTP_HOST:-}" ]; then
  sed \
    -e "s|\${PAYSAGA_SMTP_HOST}|$(literal "$PAYSAGA_SMTP_HOST")|g" \
    -e "s|\${PAYSAGA_SMTP_PORT}|$(literal "${PAYSAGA_SMTP_PORT:-25}")|g" \
    -e "s|\${PAYSAGA_SMTP_FROM}|$(literal "${PAYSAGA_SMTP_FROM:-tickets@paysaga.localhost}")|g" \
    -e "s|\${PAYSAGA_ADMIN_EMAIL}|$(literal "$PAYSAGA_ADMIN_EMAIL")|g" \
    "$template" >"$config"
else
  echo "alertmanager: PAYSAGA_ADMIN_EMAIL or PAYSAGA_SMTP_HOST unset: alerts are not mailed," \
    "only shown at http://127.0.0.1:9093" >&2
  printf '%s\n' "route:" "  receiver: nobody" "receivers:" "  - name: nobody" >"$config"
fi

exec alertmanager --config.file="$config" "$@"
