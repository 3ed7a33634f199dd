"""Every figure means what its name says at the edges (issue 9), through the CLI against the
mock's exact timings: the measured window, late frames after an `error`, the generator
falling behind.

Each test asserts the figures against what the requests themselves (requests.csv) and the
mock's fixed model say must be true, not just that the run finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.helpers import read_csv_rows, run_cli

pytestmark = [pytest.mark.realtime, pytest.mark.slow]


def _run(path: Path, out: Path, *args: str, timeout: float = 120) -> tuple[int, str, dict[str, Any], list[dict[str, str]]]:
    proc = run_cli("run", str(path), "--out", str(out), "--no-html", *args, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return proc.returncode, proc.stdout + proc.stderr, summary, read_csv_rows(out / "requests.csv")


def test_throughput_counts_answers_inside_the_window_not_the_drain(
        write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    # 10 users, answers of ~3.0 s (100 ms to the first token, 29 gaps of 100 ms), a 7 s run:
    # each user completes at ~3.0 s and ~6.0 s inside the window, and a third answer in the drain.
    path = write_scenario("""
        name: window
        target: {url: mock}
        mock: {ttft_ms: 100, gap_ms: 100, chunks: 30}
        load: {mode: closed, concurrency: 10, duration: 7s, warmup: 0s}
        session:
          steps:
            - gen: {prompt: "Explain artificial intelligence"}
        """)
    rc, out, s, rows = _run(path, tmp_path / "r")
    assert rc == 0, out
    assert s["schema"] == 2 and s["measure_s"] == 7.0
    stops = [float(r["t_stop_s"]) for r in rows if r["outcome"] == "ok"]
    in_window = sum(1 for t in stops if t < 7.0)
    assert in_window == 20 and len(stops) == 30  # the third answers all finished in the drain
    assert s["throughput"]["requests_per_s"] == pytest.approx(in_window / 7.0, abs=1e-3)
    assert s["drain"]["completed"] == 10 and 1.5 < s["drain"]["drain_s"] < 3.5
    assert s["requests"]["completed"] == 30  # the cohort: every request started in the window
    # chunks by arrival: two whole answers per user, and the third answer's first ~9 chunks
    chunks_in_window = s["throughput"]["chunks_per_s"] * 7.0
    assert 600 + 10 * 7 <= chunks_in_window <= 600 + 10 * 10
    # the same definition in timeseries.csv
    ts = read_csv_rows(tmp_path / "r" / "timeseries.csv")
    measured = [r for r in ts if r["phase"] == "measure"]
    assert sum(int(r["completions"]) for r in measured) == in_window
    assert sum(int(r["chunks"]) for r in measured) == round(chunks_in_window)
    assert {r["phase"] for r in ts if int(r["t_s"]) >= 7} == {"drain"}


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_late_frames_after_an_error_are_never_read_as_the_next_answer(
        write_scenario: Callable[..., Path], tmp_path: Path, share: float) -> None:
    # The mock sends `error` at chunk 5 of 10, then the other 5 chunks and a `stop` anyway.
    path = write_scenario(f"""
        name: late-frames
        target: {{url: mock}}
        mock: {{ttft_ms: 20, gap_ms: 5, chunks: 10, faults: {{error_then_late: {share}}}}}
        load: {{mode: closed, concurrency: 4, duration: 3s, warmup: 0s}}
        session:
          steps:
            - gen: {{prompt: "Explain artificial intelligence"}}
        slo: {{error_rate: 1.0}}
        """)
    rc, out, s, rows = _run(path, tmp_path / "r")
    assert rc == 0, out
    ok = [r for r in rows if r["outcome"] == "ok"]
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert len(failed) > 20
    # every failure is the server's error, seen after exactly the 5 chunks sent before it
    assert all(r["error_category"] == "server_error" and r["chunks"] == "5" for r in failed)
    # no answer was stitched together from another stream's late frames
    assert all(r["chunks"] == "10" and float(r["ttft_ms"]) >= 20.0 for r in ok)
    if share == 1.0:
        assert not ok
    else:
        assert len(ok) > 20
    # each failed stream retired its connection: replaced at once, counted as a reconnect
    assert s["reconnects"] >= len(failed) - 4
    assert len({r["connection"] for r in rows}) >= len(failed)
    # what the failed requests observed is kept: their TTFT and the gaps before the error
    assert s["latency_from_failed"]["ttft"] == len(failed)
    assert s["latency_from_failed"]["itl"] == 4 * len(failed)
    assert s["latency_ms"]["ttft"]["count"] == len(ok) + len(failed)
    assert s["latency_ms"].get("e2e", {"count": 0})["count"] == len(ok)
    assert s["session_error_rate"] == 0.0  # the target served every connection set-up


def test_an_error_that_ends_the_stream_also_retires_the_connection(
        write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    path = write_scenario("""
        name: error-ends
        target: {url: mock}
        mock: {ttft_ms: 20, gap_ms: 5, chunks: 10, faults: {error_mid_stream: 0.5}}
        load: {mode: closed, concurrency: 4, duration: 3s, warmup: 0s}
        session:
          steps:
            - gen: {prompt: "Explain artificial intelligence"}
        slo: {error_rate: 1.0}
        """)
    rc, out, s, rows = _run(path, tmp_path / "r")
    assert rc == 0, out
    failed = [r for r in rows if r["outcome"] == "failed"]
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert len(failed) > 10 and len(ok) > 10
    assert all(r["chunks"] == "10" for r in ok)
    assert s["reconnects"] >= len(failed) - 4
    # a request on a connection never follows a failed one on the same connection
    by_conn: dict[str, list[dict[str, str]]] = {}
    for r in sorted(rows, key=lambda r: float(r["t_send_s"])):
        by_conn.setdefault(r["connection"], []).append(r)
    for reqs in by_conn.values():
        assert all(r["outcome"] != "failed" for r in reqs[:-1]), reqs


def test_an_open_loop_rate_beyond_the_generator_says_it_fell_behind(
        write_scenario: Callable[..., Path], tmp_path: Path) -> None:
    # 20,000 arrivals/s is beyond one Python process (~5,000/s on the 2-core box): the
    # generator must say so, with the rate it really sent inside the window.
    path = write_scenario("""
        name: beyond
        target: {url: mock}
        mock: {ttft_ms: 1, gap_ms: 1, chunks: 1}
        load: {mode: open, rate: 20000, arrival: constant, duration: 3s, warmup: 1s,
               connections: 50, max_connections: 200, max_queue: 100000}
        session:
          steps:
            - gen: {prompt: "hi"}
        slo: {error_rate: 1.0, session_error_rate: 1.0}
        """)
    rc, out, s, rows = _run(path, tmp_path / "r", timeout=180)
    assert rc in (0, 1), out  # ran to the end; the verdict is the SLOs'
    sched = s["schedule"]
    assert sched["offered_rate"] == pytest.approx(20000, rel=0.01)
    sent = [float(r["t_send_s"]) for r in rows if r["t_send_s"]]
    in_window = sum(1 for t in sent if 1.0 <= t < 3.0)
    assert sched["achieved_rate"] == pytest.approx(in_window / 2.0, abs=0.5)
    assert sched["achieved_rate"] < 0.99 * sched["offered_rate"]
    measured = [r for r in rows if r["phase"] == "measure" and r["t_send_s"]]
    assert sched["sent_after_window"] == sum(1 for r in measured if float(r["t_send_s"]) >= 3.0) > 0
    assert s["generator"]["saturated"] is True
    assert any("fell behind" in r for r in s["generator"]["reasons"])
    assert "the generator fell behind" in out and "sent" in out
    assert s["latency_ms"]["send_lag"]["max"] > s["latency_ms"]["schedule_lag"]["p50"]
