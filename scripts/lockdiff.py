"""Print the packages whose installed release differs from constraints.txt's pin:
``VENV/bin/python scripts/lockdiff.py constraints.txt FREEZE`` (FREEZE: ``pip freeze`` output).
A pin whose environment marker does not hold for this interpreter (``numpy==X ; python_full_version
>= '3.12'``) is not this venv's. Exit 0 when none differ, 1 otherwise. Used by
``scripts/test.sh --latest``; needs ``packaging`` (pip's own copy will do)."""

from __future__ import annotations

import re
import sys

try:
    from packaging.markers import Marker
except ImportError:  # a venv without packaging: pip's vendored copy
    from pip._vendor.packaging.markers import Marker

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;(.*))?$")


def pins(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _PIN.match(line.strip())
            if m and (not m.group(3) or Marker(m.group(3).strip()).evaluate()):
                out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def main(lock_path: str, freeze_path: str) -> int:
    lock, now = pins(lock_path), pins(freeze_path)
    changed = sorted(n for n in lock.keys() & now.keys() if lock[n] != now[n])
    for name in changed:
        print(f"{name:<40} {lock[name]:>14} -> {now[name]}")
    for name in sorted(now.keys() - lock.keys()):
        print(f"{name:<40} {'(not locked)':>14} -> {now[name]}")
    if not changed:
        print("every locked package is at its newest allowed release")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
