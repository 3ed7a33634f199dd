"""Ctrl-C at any moment of a Ray run's start-up (issue 22, item 7): exit 4 with a summary.json,
and no process of ours or of the Ray we started left behind. Before, a SIGINT while ray.init
ran left Ray's agents orphaned for a minute (once the interpreter crashed, exit 139), and the
run directory held only requests.csv."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support.helpers import ROOT

pytestmark = pytest.mark.realtime


def _family(root: psutil.Process) -> set[psutil.Process]:
    try:
        return {root, *root.children(recursive=True)}
    except psutil.Error:
        return set()


@pytest.mark.parametrize("at_s", [1, 2, 3, 5])
def test_sigint_during_a_ray_start_up_exits_4_with_a_summary_and_no_process_left(tmp_path: Path, at_s: float) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "loadtest", "run", "scenarios/smoke.yaml", "--backend", "ray",
                             "--workers", "2", "--duration", "4s", "--out", str(out), "-q", "--no-html"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    root = psutil.Process(proc.pid)
    seen: set[psutil.Process] = set()
    t0 = time.monotonic()
    while time.monotonic() - t0 < at_s:  # every process it starts, as it starts them
        seen |= _family(root)
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    while proc.poll() is None and time.monotonic() - t0 < at_s + 60:
        seen |= _family(root)
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 4, (proc.returncode, stderr)
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "interrupted" and summary["exit_code"] == 4
    deadline = time.monotonic() + 10
    alive = [p for p in seen if p.pid != proc.pid and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    names = [" ".join(p.cmdline()[:2]) if p.is_running() else "?" for p in alive]
    for p in alive:  # leave the machine clean for the next test either way
        p.kill()
    assert not alive, f"still running 10 s after exit: {names}"
