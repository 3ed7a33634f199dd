"""Test helpers: run the CLI in a subprocess."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m loadtest ARGS`` in a subprocess; stdout/stderr captured as text."""
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    return subprocess.run([sys.executable, "-m", "loadtest", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)




def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file of the run directory, as dicts (the file read whole, then closed)."""
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
