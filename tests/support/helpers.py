"""Test helpers: run the CLI in a subprocess."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]

K = TypeVar("K")
T = TypeVar("T")


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m loadtest ARGS`` in a subprocess; stdout/stderr captured as text."""
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    return subprocess.run([sys.executable, "-m", "loadtest", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def run_concurrently(jobs: Mapping[K, Callable[[], T]], *, max_workers: int | None = None) -> dict[K, T]:
    """Every job (e.g. a ``run_cli`` call, or a mock process and a run against it) in its own
    thread, at most ``max_workers`` at a time (default: all at once); their results by key.
    For independent runs that are not timing one another: a run waits on its subprocesses, so
    the runs overlap. The first job's exception (a timeout, an assertion) is raised here."""
    with ThreadPoolExecutor(max_workers=max_workers or max(1, len(jobs))) as pool:
        futures = {key: pool.submit(job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file of the run directory, as dicts (the file read whole, then closed)."""
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def env_without(module: str, tmp_path: Path) -> dict[str, str]:
    """Environment for :func:`run_cli` in which ``import module`` raises ImportError, as on a
    machine where it is not installed (a shim module first on PYTHONPATH)."""
    shim = tmp_path / f"without-{module}"
    shim.mkdir(exist_ok=True)
    (shim / f"{module}.py").write_text(f'raise ImportError("{module} is not installed (simulated)")\n',
                                       encoding="utf-8")
    return {"PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"}
