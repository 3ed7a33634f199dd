#!/usr/bin/env bash
# The whole test suite: environment, lint, types, import contracts, pytest (incl. browser tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Headless Chromium for the report's browser tests (Debian's package; needs root or sudo).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "== ruff";        .venv/bin/ruff check loadtest tests benchmarks
echo "== mypy";        .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest";      .venv/bin/pytest -W error -q "$@"
