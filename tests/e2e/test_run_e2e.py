"""End to end through the CLI: `loadtest run` against the embedded mock (own process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from support.helpers import read_csv_rows, run_cli
from support.tolerances import GAP_SLACK_MS, MEDIAN_SLACK_MS

from loadtest.rundir.hlog import read_hlog

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

MOCK_50_USERS = """
name: e2e-50
target: {url: mock}
mock: {ttft_ms: 100, gap_ms: 10, chunks: 20}
load: {mode: closed, concurrency: 50, duration: 7s, warmup: 1s, seed: 3}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
slo: {ttft_p99_ms: 1000, error_rate: 0.0}
"""


@pytest.fixture(scope="module")
def run50(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("run50")
    scenario = tmp / "s.yaml"
    scenario.write_text(MOCK_50_USERS, encoding="utf-8")
    out = tmp / "run"
    proc = run_cli("run", str(scenario), "--out", str(out), "--no-html", "--quiet", timeout=90)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out, json.loads((out / "summary.json").read_text())


def test_mock_timing_through_the_runner(run50: tuple[Path, dict]) -> None:
    _, s = run50
    ttft = s["latency_ms"]["ttft"]
    itl = s["latency_ms"]["itl"]
    assert 100.0 <= ttft["p50"] <= 100.0 + MEDIAN_SLACK_MS, ttft
    assert 10.0 <= itl["p50"] <= 10.0 + GAP_SLACK_MS, itl
    # closed loop: the corrected and uncorrected views coincide
    assert s["latency_ms"]["ttft_uncorrected"]["p50"] == ttft["p50"]
    assert s["requests"]["failed"] == 0
    assert s["errors"]["unknown_events"] == 0
    # one persistent connection per user, set up once (the reachability probe is not counted)
    assert s["latency_ms"]["connect"]["count"] == s["latency_ms"]["auth"]["count"] == 50
    assert s["reconnects"] == 0
    # 50 users, ~290 ms per request, ~6 s measured: about 1000 requests
    assert 800 <= s["requests"]["completed"] <= 1100, s["requests"]
    assert s["chunks_per_answer"] == {"20": s["requests"]["completed"]}
    assert s["passed"] is True and s["slo"]["ttft_p99_ms"]["pass"] is True
    # the hypervisor's share of this host's CPU time during the run (Linux: /proc/stat)
    steal = s["generator"]["host_steal_percent"]
    assert (steal is None) if not Path("/proc/stat").exists() else (0.0 <= steal <= 100.0), s["generator"]


def test_every_gen_has_one_csv_row_with_20_chunks(run50: tuple[Path, dict]) -> None:
    out, s = run50
    rows = read_csv_rows(out / "requests.csv")
    ids = [int(r["request_id"]) for r in rows]
    assert len(ids) == len(set(ids)) == max(ids)  # ids 1..n, each once: nothing lost
    measured = [r for r in rows if r["phase"] == "measure"]
    ok = [r for r in measured if r["outcome"] == "ok"]
    assert len(ok) == s["requests"]["completed"]
    assert len(measured) == s["requests"]["started"]
    assert all(r["chunks"] == "20" for r in rows if r["outcome"] == "ok")
    assert any(r["phase"] == "warmup" for r in rows)
    # per-request TTFT agrees with the histogram's median (within HDR precision + rounding)
    ttfts = sorted(float(r["ttft_ms"]) for r in ok)
    median = ttfts[len(ttfts) // 2]
    assert abs(median - s["latency_ms"]["ttft"]["p50"]) < 0.5


def test_hlogs_decode_back_to_the_summary_counts(run50: tuple[Path, dict]) -> None:
    out, s = run50
    for metric in ("ttft", "itl", "e2e", "tpot"):
        intervals = read_hlog(out / f"{metric}.hlog")
        assert len(intervals) >= 5  # one per measured second
        assert sum(r.count for _, _, r in intervals) == s["latency_ms"][metric]["count"]
        starts = [start for start, _, _ in intervals]
        assert starts == sorted(starts) and starts[0] >= 1.0  # warmup (first second) excluded


def test_timeseries_marks_warmup_and_counts_completions(run50: tuple[Path, dict]) -> None:
    out, s = run50
    rows = read_csv_rows(out / "timeseries.csv")
    phases = [r["phase"] for r in rows]
    assert phases[0] == "warmup" and "measure" in phases
    order = {"warmup": 0, "measure": 1, "drain": 2}
    assert [order[p] for p in phases] == sorted(order[p] for p in phases)  # warmup, measure, drain
    assert [int(r["t_s"]) for r in rows] == list(range(len(rows)))
    # one definition: the window's per-second completions are the summary's rate times its length
    in_window = sum(int(r["completions"]) for r in rows if r["phase"] == "measure")
    assert in_window == round(s["throughput"]["requests_per_s"] * s["measure_s"])
    assert max(int(r["active_sessions"]) for r in rows) == 50
    total = sum(int(r["completions"]) for r in rows)
    warm = sum(1 for r in read_csv_rows(out / "requests.csv") if r["phase"] == "warmup")
    assert total == s["requests"]["completed"] + warm


def test_slo_below_mock_latency_fails_with_exit_1(write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    path = write_scenario("""
        name: slo-fail
        target: {url: mock}
        mock: {ttft_ms: 100, gap_ms: 5, chunks: 5}
        load: {concurrency: 5, duration: 2s}
        slo: {ttft_p99_ms: 50, error_rate: 0.5}
        """)
    proc = run_cli("run", str(path), "--out", str(tmp_path / "r"), "--no-html")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SLO ttft_p99_ms" in proc.stdout and "FAIL" in proc.stdout
    assert "SLO error_rate: 0 (limit 0.5) pass" in proc.stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["passed"] is False
    assert summary["slo"]["ttft_p99_ms"]["pass"] is False and summary["slo"]["ttft_p99_ms"]["value"] >= 100


def test_request_cap_stops_the_run(write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    path = write_scenario("""
        name: capped
        target: {url: mock}
        mock: {ttft_ms: 5, gap_ms: 1, chunks: 3}
        load: {concurrency: 4, duration: 30s}
        """)
    proc = run_cli("run", str(path), "--out", str(tmp_path / "r"), "--no-html", "--requests", "40", "-q")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["requests"]["started"] == 40 and summary["requests"]["completed"] == 40
    assert summary["duration_s"] < 10
