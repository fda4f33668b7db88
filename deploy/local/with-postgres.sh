#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server: GRIDFLOW_TEST_PG_URL points at it.
# GRIDFLOW_SKIP_PG=1 skips (loudly) on a machine that cannot run PostgreSQL; never under CI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ "${GRIDFLOW_SKIP_PG:-}" = 1 ]; then
  if [ "${CI:-}" = true ]; then
    echo "with-postgres.sh: GRIDFLOW_SKIP_PG is not allowed in CI" >&2
    exit 1
  fi
  echo "################################################################" >&2
  echo "# PostgreSQL suite NOT RUN (GRIDFLOW_SKIP_PG=1)                 #" >&2
  echo "################################################################" >&2
  exit 0
fi

url="$("$here/postgres.sh" start)"
trap '"$here/postgres.sh" stop' EXIT
GRIDFLOW_TEST_PG_URL="$url" "$@"
