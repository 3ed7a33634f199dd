"""Worker processes on one host (``--workers N``, issue 12): one merged run that agrees with
what an independent server logged it did, a lost worker (exit 5), Ctrl-C across workers."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support.helpers import ROOT, read_csv_rows, run_cli
from support.rawruns import NORMAL, ms, ok_rows, scenario, serve_and_run
from support.tolerances import MEDIAN_SLACK_MS

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime


def test_two_worker_processes_serve_exactly_what_the_server_logged(tmp_path: Path) -> None:
    run = serve_and_run(tmp_path, "normal", NORMAL, scenario("workers", users=6, duration="4s"),
                        extra_args=("--workers", "2"))
    assert run.rc == 0, run.diag()
    s, rows = run.summary, run.rows
    w = s["workers"]
    assert (w["planned"], w["finished"], w["lost"]) == (2, 2, [])
    assert [h["index"] for h in w["each"]] == [0, 1] and all(h["loop"] == "uvloop.Loop" for h in w["each"])
    # the users were split exactly (3 + 3, disjoint), and so were the request ids
    by_worker = {w: {int(r["user"]) for r in rows if r["worker"] == w} for w in ("0", "1")}
    assert by_worker == {"0": {0, 2, 4}, "1": {1, 3, 5}}
    assert len({r["request_id"] for r in rows}) == len(rows)
    # every answer the server finished is one ok row, and the merged count is the server's
    gens = run.gens()
    served = [g for g in gens.values() if g["stop"]]
    assert s["requests"]["completed"] == len(ok_rows(run)) == len(served) > 50
    # TTFT as the server timed it, within the single-process fidelity
    server_ttft = [ms(g["chunks"][0]["t_mono_ns"] - g["recv"]["t_mono_ns"]) for g in served]
    harness = [float(r["ttft_uncorrected_ms"]) for r in ok_rows(run)]
    assert 0 <= statistics.median(harness) - statistics.median(server_ttft) < MEDIAN_SLACK_MS
    # one run directory, read like any other
    assert run_cli("report", str(run.out)).returncode == 0
    # 4 s: too short for p99; --allow-saturated: a short run on a busy CI box may be flagged
    cmp = run_cli("compare", str(run.out), str(run.out), "--metric", "ttft.p50", "--allow-saturated")
    # compare read both directories; a run this short judges no check, which is exit 2 (issue 22)
    assert cmp.returncode == 2 and "no check could be judged" in cmp.stderr, cmp.stdout + cmp.stderr


def _workers_of(pid: int) -> list[psutil.Process]:
    """The worker processes of a ``loadtest run`` (multiprocessing children, not the mock)."""
    out = []
    for child in psutil.Process(pid).children(recursive=False):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


def _start(path: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "loadtest", "run", str(path), "--out", str(out), "-q", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"}, start_new_session=True)


def _wait_for_workers(proc: subprocess.Popen[str], n: int, timeout_s: float = 20) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        found = _workers_of(proc.pid)
        if len(found) == n:
            return found
        time.sleep(0.1)
    raise AssertionError("the worker processes did not start")


MOCK_SCENARIO = """
name: workers-mock
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 5, chunks: 5}
load: {mode: closed, concurrency: 6, duration: 6s, warmup: 0s, workers: 2}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
"""


def test_a_killed_worker_is_lost_its_data_up_to_the_loss_merged(write_scenario, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(write_scenario(MOCK_SCENARIO), out)
    workers = _wait_for_workers(proc, 2)
    time.sleep(3.0)  # about 2 s into the load, after a few ticks of both workers
    victim = workers[1]
    victim.kill()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 5, (proc.returncode, stderr[-2000:])
    assert "Traceback" not in stderr + stdout
    assert "worker was lost" in stdout
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert s["verdict"] == "incomplete" and s["passed"] is False
    assert (s["workers"]["planned"], s["workers"]["finished"]) == (2, 1)
    assert len(s["workers"]["lost"]) == 1 and "worker" in s["workers"]["lost"][0]
    lost = [w for w in s["workers"]["each"] if w["lost"]]
    assert len(lost) == 1
    rows = read_csv_rows(out / "requests.csv")
    # the lost worker's rows written before the loss are kept, and its figures merged
    lost_rows = [r for r in rows if r["worker"] == str(lost[0]["index"])]
    survivor_rows = [r for r in rows if r["worker"] != str(lost[0]["index"])]
    assert lost_rows and survivor_rows
    assert s["requests"]["completed"] > sum(r["outcome"] == "ok" for r in survivor_rows)
    assert (out / "report.html").exists()
    assert "A worker was lost" in (out / "report.html").read_text(encoding="utf-8")


def test_ctrl_c_stops_every_worker_and_writes_the_merged_run(write_scenario, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(write_scenario(MOCK_SCENARIO.replace("duration: 6s", "duration: 30s")), out, "--no-html")
    workers = _wait_for_workers(proc, 2)
    time.sleep(2.5)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process of the group gets it
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 4, stderr[-2000:]
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert s["verdict"] == "interrupted" and not s["workers"]["lost"]
    rows = read_csv_rows(out / "requests.csv")
    assert {r["worker"] for r in rows} == {"0", "1"}
    # the workers drained (the coordinator relayed the stop), nothing was cut off
    assert s["requests"]["failed"] == 0 and s["requests"]["cancelled"] == 0
    assert s["requests"]["completed"] == sum(r["outcome"] == "ok" for r in rows)
    assert all(not w.is_running() for w in workers)
