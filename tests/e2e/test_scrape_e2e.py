"""End to end through the CLI (issue 21): ``loadtest run --scrape URL`` scrapes a test server with
a known counter (tests/support/metricsserver.py) once a second during the run, into
target_metrics.csv, summary.json ``live.scrape`` and the report; a scrape target that answers
garbage or refuses is counted and shown, and the run is unaffected."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.helpers import read_csv_rows, run_cli, run_concurrently
from support.metricsserver import MetricsServer, Served

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

SCENARIO = """
name: scrape-e2e
target: {url: mock}
mock: {ttft_ms: 50, gap_ms: 10, chunks: 10}
load: {mode: closed, concurrency: 5, duration: 4s, warmup: 0s, seed: 3}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence"}
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("scrape")
    scenario = tmp / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    with MetricsServer(tick_s=0.1) as server:
        good = server.url("/metrics")
        bad = [server.url("/garbage"), f"http://127.0.0.1:{_closed_port()}/metrics"]

        def run(out: Path, *urls: str) -> Any:
            return run_cli("run", str(scenario), "--out", str(out), "--quiet",
                           *(a for u in urls for a in ("--scrape", u)), timeout=120)  # fmt: skip

        procs = run_concurrently({"good": lambda: run(tmp / "good", good),
                                  "bad": lambda: run(tmp / "bad", *bad)})  # fmt: skip
        served = server.served("/metrics")
    yield {"procs": procs, "good": tmp / "good", "bad": tmp / "bad", "served": served,
           "good_url": good, "bad_urls": bad}  # fmt: skip


def test_the_known_counter_is_in_target_metrics_once_a_second_ending_at_the_final_count(runs: dict[str, Any]) -> None:
    proc = runs["procs"]["good"]
    assert proc.returncode == 0, proc.stderr + proc.stdout
    served: list[Served] = runs["served"]
    rows = [r for r in read_csv_rows(runs["good"] / "target_metrics.csv") if r["metric"] == "test_requests_total"]
    assert {r["target"] for r in rows} == {"0"} and {r["labels"] for r in rows} == {""}
    values = [float(r["value"]) for r in rows]
    # every answer the server gave is a row, in order; the last one is its final count
    assert values == [s.values["test_requests_total"] for s in served]
    assert values[-1] == len(served)
    times = [float(r["t_s"]) for r in rows]
    assert times == sorted(times)
    assert times[0] < 0.5  # the "before" scrape: as the run began, or before
    assert len(rows) >= 5  # before, one a second for the 4 s run, after
    ticks = times[1:-1]  # the scheduled ones, between "before" and "after"
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps and all(0.75 < g < 1.25 for g in gaps), times
    # the window of the run is covered: a scrape at least every ~1 s from start to end
    timeseries = read_csv_rows(runs["good"] / "timeseries.csv")
    assert times[-1] >= float(timeseries[-1]["t_s"]) - 1.0
    summary = json.loads((runs["good"] / "summary.json").read_text())
    scrape = summary["live"]["scrape"]
    assert scrape["urls"] == [runs["good_url"]]
    assert scrape["scrapes"] == {runs["good_url"]: len(served)}
    assert scrape["failed"] == {runs["good_url"]: 0}
    assert summary["requests"]["completed"] > 0 and summary["requests"]["failed"] == 0
    page = (runs["good"] / "report.html").read_text(encoding="utf-8")
    assert 'id="target-metrics"' in page and '"chart-target"' in page


def test_garbage_and_refused_scrape_targets_are_counted_and_the_run_is_unaffected(runs: dict[str, Any]) -> None:
    proc = runs["procs"]["bad"]
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads((runs["bad"] / "summary.json").read_text())
    scrape = summary["live"]["scrape"]
    garbage, refused = runs["bad_urls"]
    assert scrape["failed"][garbage] >= 4 and scrape["scrapes"][garbage] == 0
    assert scrape["failed"][refused] >= 4 and scrape["scrapes"][refused] == 0
    assert "not Prometheus text" in scrape["last_error"][garbage]
    assert "refused" in scrape["last_error"][refused]
    assert summary["requests"]["completed"] > 0 and summary["requests"]["failed"] == 0
    assert summary["passed"] is True
    assert read_csv_rows(runs["bad"] / "target_metrics.csv") == []  # nothing kept from a failed scrape
    page = (runs["bad"] / "report.html").read_text(encoding="utf-8")
    assert page.count('data-warning="scrape-failed"') == 2
