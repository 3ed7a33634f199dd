"""Runner features end to end: closed-loop ramps, console output, `loadtest report`."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from support.helpers import read_csv_rows, run_cli, run_concurrently

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime


def test_closed_loop_stages_ramp_users_up_and_down(write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    path = write_scenario("""
        name: ramp
        target: {url: mock}
        mock: {ttft_ms: 20, gap_ms: 2, chunks: 5}
        load:
          mode: closed
          stages:
            - {duration: 2s, target: 20}
            - {duration: 2s, target: 20}
            - {duration: 2s, target: 4}
        session:
          steps:
            - gen: {prompt: hi}
            - think: 50ms
        """)
    out = tmp_path / "r"
    proc = run_cli("run", str(path), "--out", str(out), "--no-html", "-q")
    assert proc.returncode == 0, proc.stderr
    ts = read_csv_rows(out / "timeseries.csv")
    active = [int(r["active_sessions"]) for r in ts]
    # ramp 0 → 20 over 2 s (about 10 at 1 s), hold at 20, then down towards 4
    assert 5 <= active[0] <= 15, active
    assert active[2] == active[3] == 20, active
    assert active[5] <= 12, active
    users = {int(r["user"]) for r in read_csv_rows(out / "requests.csv")}
    assert users == set(range(20))


def test_plain_progress_lines_and_final_table_when_not_a_tty(write_scenario: Callable[..., Path],
                                                             tmp_path: Path) -> None:
    path = write_scenario("""
        name: console
        target: {url: mock}
        mock: {ttft_ms: 20, gap_ms: 2, chunks: 5}
        load: {concurrency: 3, duration: 6s}
        """)
    # the two runs at once (each its own embedded mock and directory): what is checked is their
    # console output, not a figure
    procs = run_concurrently({
        "plain": partial(run_cli, "run", str(path), "--out", str(tmp_path / "r"), "--no-html"),
        "quiet": partial(run_cli, "run", str(path), "--out", str(tmp_path / "q"), "--no-html", "--quiet",
                         "--duration", "2s"),
    })  # fmt: skip
    proc = procs["plain"]
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if "ttft p50" in line]
    assert len(progress) >= 1 and "users" in progress[0]  # plain lines, no terminal control codes
    assert "\x1b[" not in proc.stderr
    assert "latency (ms)" in proc.stdout and "ttft" in proc.stdout and "PASSED" in proc.stdout
    quiet = procs["quiet"]
    assert quiet.returncode == 0
    assert "latency (ms)" not in quiet.stdout and "PASSED" in quiet.stdout
    assert not [line for line in quiet.stderr.splitlines() if "ttft p50" in line]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("two")
    dirs = []
    for name, ttft in (("fast", 20), ("slow", 60)):
        scenario = tmp / f"{name}.yaml"
        scenario.write_text(
            f"name: {name}\ntarget: {{url: mock}}\nmock: {{ttft_ms: {ttft}, gap_ms: 2, chunks: 5}}\n"
            "load: {concurrency: 4, duration: 3s}\n", encoding="utf-8")
    # both runs at once (each its own embedded mock and directory): 4 users each, a few % of a
    # core; the one figure checked (slow's TTFT p50 > 55 ms, its mock's 60 ms) can only rise
    procs = run_concurrently({name: partial(run_cli, "run", str(tmp / f"{name}.yaml"), "--out", str(tmp / name), "-q")
                              for name in ("fast", "slow")})
    for name in ("fast", "slow"):
        out, proc = tmp / name, procs[name]
        assert proc.returncode == 0, proc.stderr
        assert (out / "report.html").stat().st_size > 100_000  # written by every run
        dirs.append(out)
    return dirs[0], dirs[1]


def test_report_command_rebuilds_and_compares(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    fast, slow = two_runs
    (fast / "report.html").unlink()
    proc = run_cli("report", str(fast))
    assert proc.returncode == 0, proc.stderr
    assert (fast / "report.html").exists() and proc.stdout.strip().endswith("report.html")
    out = tmp_path / "compare.html"
    proc = run_cli("report", str(fast), str(slow), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    html = out.read_text(encoding="utf-8")
    assert "fast" in html and "slow" in html
    assert json.loads((slow / "summary.json").read_text())["latency_ms"]["ttft"]["p50"] > 55


def test_report_command_refuses_bad_input(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    fast, slow = two_runs
    proc = run_cli("report", str(fast), str(slow))
    assert proc.returncode == 2 and "--out" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("report", str(empty))
    assert proc.returncode == 2 and "summary.json" in proc.stderr and "Traceback" not in proc.stderr
