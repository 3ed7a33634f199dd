"""scripts/lockdiff.py (what `scripts/test.sh --latest` prints first): a pin differs, a pin for
another interpreter is not this venv's, a package the lock does not know is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _diff(tmp_path: Path, lock: str, freeze: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "lock.txt").write_text(lock, encoding="utf-8")
    (tmp_path / "freeze.txt").write_text(freeze, encoding="utf-8")
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lockdiff.py"), str(tmp_path / "lock.txt"),
                           str(tmp_path / "freeze.txt")], capture_output=True, text=True, timeout=30)


def test_only_this_interpreters_pins_are_compared(tmp_path: Path) -> None:
    lock = ("# header\nnumpy==2.4.6 ; python_full_version < '3.11'\nnumpy==2.5.5 ; python_full_version >= '3.11'\n"
            "    # via pandas\nPyYAML==6.0.4\n")
    same = _diff(tmp_path, lock, "numpy==2.5.5\npyyaml==6.0.4\n")
    assert same.returncode == 0 and "every locked package is at its newest" in same.stdout, same.stdout
    newer = _diff(tmp_path, lock, "numpy==2.6.0\npyyaml==6.0.4\nnewpkg==1.0\n")
    assert newer.returncode == 1
    assert [line.split() for line in newer.stdout.splitlines()] == [
        ["numpy", "2.5.5", "->", "2.6.0"], ["newpkg", "(not", "locked)", "->", "1.0"]]
