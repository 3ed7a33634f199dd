"""``calibrate`` checks its inputs before its first run (issue 22, item 6), and a pair of runs on
which its replay of the one-run gate could judge no check is not counted as a pass (item 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.helpers import run_cli

SCENARIO = """name: calibrate-inputs
target: {url: mock}
mock: {ttft_ms: 20, gap_ms: 2, chunks: 4}
load: {concurrency: 2, duration: 8s, warmup: 0s}
session:
  steps:
    - gen: {name: ask, prompt: "Explain artificial intelligence"}
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.mark.realtime
def test_a_tag_the_scenario_cannot_carry_is_refused_before_any_run(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal"
    t0 = time.monotonic()
    proc = run_cli("calibrate", str(scenario), "--target", "mock", "--out", str(out), "--tag", "step=asq")
    assert proc.returncode == 2 and "--tag step=asq: no request of this scenario can carry it" in proc.stderr, \
        proc.stderr  # fmt: skip
    assert time.monotonic() - t0 < 4.0 and not out.exists()  # one run of it takes 8 s


@pytest.mark.realtime
def test_a_replay_that_judged_nothing_gives_no_false_alarm_rate(scenario: Path, tmp_path: Path) -> None:
    # 2 s runs of 2 users: far from p99's 1,000 samples and from the one-run gate's 10 seconds, so
    # no pair of runs can be judged: that is no A/A pass (issue 22), but the noise is still measured
    out = tmp_path / "cal"
    proc = run_cli("calibrate", str(scenario), "--target", "mock", "--out", str(out), "--runs", "2", "--duration",
                   "2s", "--metric", "ttft.p99", "--metric", "ttft.p50", "--allow-saturated", "--retries", "0",
                   timeout=90)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "one-run compare on 1 A/A pairs: none could be judged, no false-alarm rate (no check could be judged" \
        in proc.stdout, proc.stdout  # fmt: skip
    data = json.loads((out / "calibration.json").read_text(encoding="utf-8"))
    assert data["pairs"] == 1 and data["judged_pairs"] == 0 and data["false_alarm_rate"] is None, data
    assert set(data["noise"]) == {"ttft p99", "ttft p50"}
