"""SIGINT / SIGTERM during a run: exit 4, and a valid run directory with what was measured.

The CLI runs in its own session (process group) so a signal can be sent to the whole group,
as a terminal's Ctrl-C does: the embedded mock (a child process) receives it too.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.helpers import ROOT

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

SCENARIO = """
name: signals
target: {url: mock}
mock: {ttft_ms: 40, gap_ms: 5, chunks: 20}
load: {mode: closed, concurrency: 8, duration: 60s, warmup: 500ms, seed: 2}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
timeouts: {connect: 2s, first_token: 5s, stream: 5s}
slo: {error_rate: 0.5}
"""


def _start(scenario: Path, out: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "loadtest", "run", str(scenario), "--out", str(out), "--no-html", "-q"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"}, start_new_session=True)


def _wait_for_rows(proc: subprocess.Popen[str], out: Path, rows: int = 30, timeout_s: float = 15.0) -> None:
    """Until requests.csv.partial holds ``rows`` rows of the measured phase (it is buffered: a few
    KB at a time; counting measured rows, not bytes, keeps this independent of the row's width)."""
    partial = out / "requests.csv.partial"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if partial.exists() and partial.read_text(encoding="utf-8").count(",measure,") > rows:
            return
        time.sleep(0.05)
    raise AssertionError("no rows in requests.csv.partial")


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        stdout, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, stdout, stderr


def _read(out: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    with open(out / "requests.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return summary, rows


@pytest.fixture
def scenario(write_scenario: Callable[..., Path]) -> Path:
    return write_scenario(SCENARIO)


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["sigint-group", "sigterm"])
def test_one_signal_stops_the_run_and_keeps_what_completed(scenario: Path, tmp_path: Path,
                                                           sig: signal.Signals, group: bool) -> None:
    out = tmp_path / "run"
    proc = _start(scenario, out)
    _wait_for_rows(proc, out)
    t_sig = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)  # as Ctrl-C in a terminal: the mock child gets it too
    else:
        proc.send_signal(sig)
    rc, stdout, stderr = _finish(proc)
    assert time.monotonic() - t_sig < 5  # streams of ~140 ms: the grace period ends early
    assert rc == 4, stderr
    assert "Traceback" not in stderr + stdout
    summary, rows = _read(out)
    assert summary["interrupted"] is True
    # never a pass, whatever the SLOs say of the partial data (which are still shown)
    assert summary["verdict"] == "interrupted" and summary["passed"] is False
    assert summary["slo"]["error_rate"] == {"limit": 0.5, "value": 0.0, "pass": True}
    assert summary["duration_s"] < 30
    measured = [r for r in rows if r["phase"] == "measure"]
    ok = [r for r in measured if r["outcome"] == "ok"]
    assert summary["requests"]["completed"] == len(ok) > 20
    assert summary["requests"]["started"] == len(measured)
    # the in-flight streams were allowed to finish: nothing failed or was cut off,
    # and the mock was not taken down under them by the signal
    assert summary["requests"]["failed"] == 0 and summary["requests"]["cancelled"] == 0, summary["errors"]
    assert all(r["outcome"] == "ok" for r in rows)
    assert not (out / "requests.csv.partial").exists()
    assert (out / "timeseries.csv").is_file() and (out / "ttft.hlog").is_file()


def test_two_sigints_stop_at_once_and_files_stay_valid(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(scenario, out)
    _wait_for_rows(proc, out)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    rc, stdout, stderr = _finish(proc)
    assert rc == 4, stderr
    assert "Traceback" not in stderr + stdout
    summary, rows = _read(out)
    assert summary["interrupted"] is True
    measured = [r for r in rows if r["phase"] == "measure"]
    assert summary["requests"]["completed"] == sum(r["outcome"] == "ok" for r in measured) > 0
    # streams cut by the hard stop are recorded, not lost: every gen has its row
    ids = sorted(int(r["request_id"]) for r in rows)
    assert ids == list(range(1, len(ids) + 1))
    assert summary["requests"]["started"] == len(measured)
    assert {r["outcome"] for r in rows} <= {"ok", "failed", "cancelled"}
    assert not (out / "requests.csv.partial").exists()


@pytest.mark.parametrize("first_s", [0.4, 0.9, 1.3])
def test_a_second_signal_while_the_first_is_handled_still_exits_4(scenario: Path, tmp_path: Path,
                                                                  first_s: float) -> None:
    """Issue 10: two Ctrl-Cs during start-up or clean-up exited 130 (a KeyboardInterrupt
    raised while the first was being handled). Both signals now give exit 4, never 130."""
    out = tmp_path / "run"
    proc = _start(scenario, out)
    time.sleep(first_s)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.03)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    rc, stdout, stderr = _finish(proc)
    assert rc == 4, (rc, stderr)
    assert "Traceback" not in stderr + stdout
    # once the command has begun (its directory exists) it says so (issue 22): complete if the run
    # had started, else a summary.json of nothing measured; a signal during the interpreter's own
    # imports comes before the command knows its --out
    if not out.exists():
        return
    raw = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert raw["verdict"] == "interrupted" and raw["exit_code"] == 4
    if raw.get("measured") is not False:
        summary, _ = _read(out)
        assert summary["verdict"] == "interrupted" and summary["passed"] is False
