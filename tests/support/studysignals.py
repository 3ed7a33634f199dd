"""A study (``sweep``, ``ab``, ``calibrate``) in a subprocess, signalled at a chosen moment: when
the run directory named by a glob under ``--out`` has measured rows in its
``requests.csv.partial`` (that run is measuring), never after a fixed sleep.

The process runs in its own session (so that a test that times out can stop its whole group,
the embedded mock included); its output goes to files (a pipe nobody reads could fill and
block it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support.helpers import ROOT

__all__ = ["Signalled", "signal_study"]


@dataclass(frozen=True)
class Signalled:
    code: int
    stdout: str
    stderr: str
    out: Path
    #: from the first signal to the process's exit
    exit_s: float


def signal_study(args: list[str], out: Path, *, when: str, signals: tuple[signal.Signals, ...] = (signal.SIGINT,),
                 rows: int = 5, timeout_s: float = 60.0) -> Signalled:  # fmt: skip
    """``loadtest ARGS --out OUT``; once ``OUT/<when>/requests.csv.partial`` holds more than
    ``rows`` measured rows, ``signals`` are sent to it (30 ms apart), and its exit awaited."""
    logs = out.parent / f"{out.name}.log"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w", encoding="utf-8") as so, open(logs / "stderr", "w", encoding="utf-8") as se:
        proc = subprocess.Popen([sys.executable, "-m", "loadtest", *args, "--out", str(out)], stdout=so, stderr=se,
                                text=True, cwd=ROOT, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                                start_new_session=True)  # fmt: skip
        try:
            _wait_measuring(proc, out, when, rows, logs, time.monotonic() + timeout_s)
            t0 = time.monotonic()
            for i, sig in enumerate(signals):
                if i:
                    time.sleep(0.03)
                proc.send_signal(sig)
            proc.wait(timeout=30)
            exit_s = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return Signalled(proc.returncode, _read(logs / "stdout"), _read(logs / "stderr"), out, exit_s)


def _wait_measuring(proc: subprocess.Popen[str], out: Path, when: str, rows: int, logs: Path,
                    deadline: float) -> None:  # fmt: skip
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the study ended (exit {proc.returncode}) before {when} measured: "
                                 f"{_read(logs / 'stderr')[-2000:]}")  # fmt: skip
        for partial in out.glob(f"{when}/requests.csv.partial"):
            try:
                if _read(partial).count(",measure,") > rows:
                    return
            except FileNotFoundError:  # the run ended and renamed it: its directory is complete
                pass
        time.sleep(0.05)
    raise AssertionError(f"{when} never measured: {_read(logs / 'stderr')[-2000:]}")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")
