#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL and a single-node Kafka on 127.0.0.1:
# GRIDFLOW_TEST_PG_URL and GRIDFLOW_TEST_KAFKA point at them; both are stopped afterwards.
# GRIDFLOW_SKIP_SERVICES=1 skips (loudly) on a machine that cannot run them; never under CI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ "${GRIDFLOW_SKIP_SERVICES:-}" = 1 ]; then
  if [ "${CI:-}" = true ]; then
    echo "with-services.sh: GRIDFLOW_SKIP_SERVICES is not allowed in CI" >&2
    exit 1
  fi
  echo "####################################################################" >&2
  echo "# PostgreSQL + Kafka suite NOT RUN (GRIDFLOW_SKIP_SERVICES=1)       #" >&2
  echo "####################################################################" >&2
  exit 0
fi

cleanup() {
  "$here/kafka.sh" stop || true
  "$here/postgres.sh" stop || true
}
trap cleanup EXIT
pg_url="$("$here/postgres.sh" start)"
kafka="$("$here/kafka.sh" start)"
echo "with-services.sh: PostgreSQL at ${pg_url#*@}, Kafka at $kafka" >&2
GRIDFLOW_TEST_PG_URL="$pg_url" GRIDFLOW_TEST_KAFKA="$kafka" "$@"
