#!/usr/bin/env bash
# Create the virtualenv (if missing) and install loadtest (editable) with its dev extra, at the
# exact releases of constraints.txt (scripts/lock.sh refreshes it): two installs on two days
# are the same. Idempotent.
#   VENV=dir      the virtualenv (default .venv)
#   --latest      the newest releases pyproject.toml allows instead (scripts/test.sh --latest)
#   --lowest      the oldest: every direct runtime dependency at its lower bound (needs uv,
#                 installed into the venv; scripts/test.sh --lowest)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet 'pip==26.3' >/dev/null
if [ "${1:-}" = "--latest" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
  "$VENV/bin/python" -m pip freeze --exclude-editable > "$VENV/latest-freeze.txt"
elif [ "${1:-}" = "--lowest" ]; then
  "$VENV/bin/python" -m pip install --quiet 'uv>=0.5,<1'
  "$VENV/bin/uv" pip compile pyproject.toml --resolution lowest-direct --python-version 3.11 --no-header \
    --quiet --output-file "$VENV/lowest.txt"
  "$VENV/bin/python" -m pip install --quiet -c "$VENV/lowest.txt" -e '.[dev]'
else
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e '.[dev]'
fi
