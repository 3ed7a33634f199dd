#!/usr/bin/env bash
# Refresh constraints.txt: the exact release of every package (runtime, the dev and ray extras,
# and everything they pull in) that scripts/bootstrap.sh and CI install, resolved from
# pyproject.toml by uv (https://docs.astral.sh/uv/) for every platform (--universal keeps the
# markers, e.g. uvloop's). Run it, run scripts/test.sh, commit both files together.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || { .venv/bin/python -m pip install --quiet 'uv>=0.5,<1'; UV=.venv/bin/uv; }
"$UV" pip compile pyproject.toml --extra dev --extra ray --universal --python-version 3.11 \
  --no-header --quiet --output-file constraints.txt "$@"
sed -i '1i # The exact releases CI and scripts/bootstrap.sh install (pip install -c constraints.txt).\n# Generated from pyproject.toml by scripts/lock.sh (uv pip compile --universal); do not edit.' constraints.txt
echo "constraints.txt: $(grep -c '^[a-z]' constraints.txt) packages pinned"
