"""What a study writes says what the process returns, and an output that cannot be written is bad
input (issue 22, items 4 and 5): every JSON a command writes carries the exit code the process
returns (summary.json, sweep.json, capacity.json), including when the target dies mid-sweep; an
--out that cannot be written is exit 2 in one line for every command, before anything runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.helpers import ROOT, run_cli

pytestmark = pytest.mark.realtime

SCENARIO = """\
name: dies
target: {url: mock}
load: {mode: closed, concurrency: 1, duration: 2s, warmup: 0s, seed: 1}
session:
  steps:
    - gen: {prompt: "hello"}
timeouts: {connect: 1s, first_token: 2s, stream: 5s}
slo: {ttft_p99_ms: 5000}
"""


@pytest.mark.parametrize("command", [
    ["run", "scenarios/smoke.yaml", "--duration", "3s"],
    ["sweep", "scenarios/smoke.yaml", "--levels", "2", "--step-duration", "3s"],
    ["calibrate", "scenarios/smoke.yaml", "--target", "mock", "--runs", "2", "--duration", "3s"],
    ["ab", "scenarios/smoke.yaml", "--baseline", "mock", "--candidate", "mock", "--rounds", "1", "--duration", "3s"],
])  # fmt: skip
def test_an_out_under_a_file_is_exit_2_in_one_line(tmp_path: Path, command: list[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    t0 = time.monotonic()
    proc = run_cli(*command, "--out", str(blocker / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(blocker / "out") in errors[0] and "Not a directory" in errors[0]
    assert time.monotonic() - t0 < 10  # refused before any run (a run of this scenario takes 3 s and more)


def test_report_out_under_a_file_is_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    run_dir = ROOT / "tests" / "support"  # not a run directory: the output is checked first
    proc = run_cli("report", str(run_dir), "--out", str(blocker / "r.html"))
    assert proc.returncode == 2
    assert f"{blocker} is not a directory" in proc.stderr


def test_summary_json_carries_the_exit_code_of_run(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.replace("ttft_p99_ms: 5000", "ttft_p99_ms: 1"))  # the mock's TTFT fails it
    codes = {}
    for name, args in (("passed", ["scenarios/smoke.yaml", "--duration", "3s"]), ("failed", [str(scenario)]),
                       ("unreachable", [str(scenario), "--target", "ws://127.0.0.1:9/v2/chat", "--api-key", "k"])):
        out = tmp_path / name
        proc = run_cli("run", *args, "--out", str(out), "--no-html", "-q")
        summary = json.loads((out / "summary.json").read_text())
        assert summary["verdict"] == name
        codes[name] = (proc.returncode, summary["exit_code"])
    assert codes == {"passed": (0, 0), "failed": (1, 1), "unreachable": (3, 3)}


def test_a_sweep_whose_target_dies_writes_the_exit_code_it_returns(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    mock = subprocess.Popen([sys.executable, "-m", "loadtest", "mock", "--port", "0", "--ttft-ms", "20",
                             "--exit-with-parent"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    out = tmp_path / "sweep"
    try:
        assert mock.stdout is not None
        url = mock.stdout.readline().strip()
        sweep = subprocess.Popen([sys.executable, "-m", "loadtest", "sweep", str(scenario), "--target", url,
                                  "--api-key", "k", "--levels", "1,2,4,8", "--step-duration", "2s", "--out",
                                  str(out), "--no-html", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=ROOT)
        deadline = time.monotonic() + 60
        while not list(out.glob("step-01*/summary.json")):  # the first step is done: the target dies
            assert time.monotonic() < deadline and sweep.poll() is None
            time.sleep(0.05)
        mock.kill()
        _stdout, stderr = sweep.communicate(timeout=60)
    finally:
        if mock.poll() is None:
            mock.kill()
        mock.wait()
        for pipe in (mock.stdin, mock.stdout):
            if pipe is not None:
                pipe.close()
    assert sweep.returncode == 3, stderr
    assert "Traceback" not in stderr
    capacity = json.loads((out / "capacity.json").read_text())
    doc = json.loads((out / "sweep.json").read_text())
    assert capacity["answer"]["exit_code"] == doc["exit_code"] == 3
    assert capacity["answer"]["ended_by"] == "unreachable" and doc["stopped"] == "unreachable"


@pytest.mark.parametrize("command", [
    ["sweep", "scenarios/smoke.yaml", "--levels", "2,4", "--step-duration", "6s"],
    ["calibrate", "scenarios/smoke.yaml", "--target", "mock", "--runs", "3", "--duration", "6s"],
    ["ab", "scenarios/smoke.yaml", "--baseline", "mock", "--candidate", "mock", "--rounds", "2", "--duration", "6s"],
])  # fmt: skip
def test_a_ctrl_c_during_a_study_exits_4_and_what_it_wrote_says_4(tmp_path: Path, command: list[str]) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "loadtest", *command, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not list(out.glob("*/requests.csv.partial")):  # the first run is measuring
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr
    assert "Traceback" not in stderr
    written = [json.loads(p.read_text()) for p in out.glob("*/summary.json")]
    assert written and all(s["exit_code"] == 4 and s["verdict"] == "interrupted" for s in written)
    for name in ("sweep.json", "capacity.json"):
        if (out / name).exists():  # the sweep's own files say what it returned
            doc = json.loads((out / name).read_text())
            assert (doc["exit_code"] if name == "sweep.json" else doc["answer"]["exit_code"]) == 4
