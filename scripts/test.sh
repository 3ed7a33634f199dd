#!/usr/bin/env bash
# The test suite. `scripts/test.sh` runs everything (CI): environment, lint, types, import
# contracts, pytest incl. real-socket and headless-browser tests. `scripts/test.sh --fast`
# runs the fast tier only: pure and virtual-time unit tests, no sockets or processes
# (under a minute on 2 cores). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi
scripts/bootstrap.sh
# The fast tier (no sockets, no processes, no clocks) runs on every core (pytest-xdist); the
# real-time tier runs alone, one test at a time: its figures are timings, and a second test
# competing for the 2 cores would make them the machine's.
if [ "$fast" = 1 ]; then
  echo "== pytest (fast tier)"; exec .venv/bin/pytest -W error -q -n auto -m "not realtime" "$@"
fi
# Headless Chromium for the report's browser tests, a real Prometheus server for the live-export
# tests (Debian's packages; needs root or sudo). Their tests fail in CI (CI=true) without them.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/prometheus ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
  $SUDO apt-get update -qq
  [ -x /usr/bin/chromium ] || $APT chromium >/dev/null
  # the server only: not its recommended node exporter (a system service on a machine with systemd)
  [ -x /usr/bin/prometheus ] || $APT --no-install-recommends prometheus >/dev/null
fi
echo "== ruff";        .venv/bin/ruff check loadtest tests benchmarks
echo "== mypy";        .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports
echo "== pytest (fast tier, parallel)"; .venv/bin/pytest -W error -q -n auto -m "not realtime" "$@"
echo "== pytest (real-time tier, serial)"; .venv/bin/pytest -W error -q -m "realtime" --durations=15 "$@"
