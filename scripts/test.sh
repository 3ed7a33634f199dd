#!/usr/bin/env bash
# The test suite. `scripts/test.sh` runs everything (CI): environment, lint, types, import
# contracts, pytest incl. real-socket and headless-browser tests. `scripts/test.sh --fast`
# runs the fast tier only: pure and virtual-time unit tests, no sockets or processes
# (under a minute on 2 cores). `scripts/test.sh --latest` runs everything against the newest
# releases pyproject.toml allows (in .venv-latest; for a scheduled job: examples/) instead of
# constraints.txt, and prints what differs from the lock; `--lowest` against every direct
# runtime dependency's lower bound (in .venv-lowest). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0; deps=locked
while [ "${1:-}" = "--fast" ] || [ "${1:-}" = "--latest" ] || [ "${1:-}" = "--lowest" ]; do
  case "$1" in --fast) fast=1 ;; --latest) deps=latest ;; --lowest) deps=lowest ;; esac
  shift
done
if [ "$deps" = latest ]; then
  export VENV=.venv-latest
  scripts/bootstrap.sh --latest
  echo "== newer than constraints.txt"
  "$VENV/bin/python" scripts/lockdiff.py constraints.txt "$VENV/latest-freeze.txt" || true
elif [ "$deps" = lowest ]; then
  export VENV=.venv-lowest
  scripts/bootstrap.sh --lowest
  echo "== every direct runtime dependency at its lower bound:"
  grep -E '^[a-z]' "$VENV/lowest.txt" | tr '\n' ' '; echo
else
  export VENV=.venv
  scripts/bootstrap.sh
fi
B="$VENV/bin"
# The fast tier (no sockets, no processes, no clocks) runs on every core (pytest-xdist). Of the
# real-time tier, the tests that assert behaviour only run three at a time (most of their time is
# spent waiting on subprocesses); those that measure
# time run alone, one at a time: a second test competing for the 2 cores would make their
# figures the machine's (tests/support/tiers.py).
if [ "$fast" = 1 ]; then
  echo "== pytest (fast tier)"; exec $B/pytest -W error -q -n auto -m "not realtime" "$@"
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
echo "== ruff";        $B/ruff check loadtest tests benchmarks
echo "== mypy";        $B/mypy
echo "== import-linter"; $B/lint-imports
echo "== pytest (fast tier, parallel)"; $B/pytest -W error -q -n auto -m "not realtime" "$@"
echo "== pytest (real-time tier: behaviour, three at a time)"
$B/pytest -W error -q -n 3 --dist loadfile -m "realtime and concurrent" --durations=10 "$@"
echo "== pytest (real-time tier: timings, one at a time)"
$B/pytest -W error -q -m "realtime and not concurrent" --durations=15 "$@"
