"""End to end through the CLI (issue 21): ``loadtest run --otlp URL`` pushes the run's metrics to
an OTLP/HTTP receiver (tests/support/otlpreceiver.py) during the run and once at its end; the
final push's points add up to summary.json (``latency_ms.<metric>.count``, ``requests``, per
tag too). An unreachable collector is a warning on the console and in summary.json
``live.otlp``, and the run still passes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.helpers import run_cli, run_concurrently
from support.otlpreceiver import OtlpReceiver, attrs, free_port, points

from loadtest.live.otlp import HISTOGRAM_NAMES
from loadtest.live.state import LIVE_METRICS, OUTCOMES

#: real sockets, processes or wall-clock time: the full tier only (scripts/test.sh)
pytestmark = pytest.mark.realtime

SCENARIO = """
name: otlp-e2e
target: {url: mock}
mock: {ttft_ms: 50, gap_ms: 10, chunks: 10}
load: {mode: closed, concurrency: 5, duration: 4s, warmup: 1s, seed: 3}
session:
  steps:
    - gen: {prompt: "Explain artificial intelligence", tags: {tier: free}}
outputs: {otlp_interval: 1s}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("otlp")
    scenario = tmp / "s.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    down = f"http://127.0.0.1:{free_port()}/v1/metrics"
    with OtlpReceiver() as rx:

        def run(out: Path, url: str) -> Any:
            return run_cli("run", str(scenario), "--out", str(out), "--quiet", "--otlp", url, timeout=120)

        procs = run_concurrently({"good": lambda: run(tmp / "good", rx.url),
                                  "down": lambda: run(tmp / "down", down)})  # fmt: skip
        received = rx.received()
        rejected = list(rx.rejected)
    yield {"procs": procs, "good": tmp / "good", "down": tmp / "down", "received": received,
           "rejected": rejected, "url": rx.url, "down_url": down}  # fmt: skip


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def _series(request: Any, name: str, tag: str | None) -> Any:
    (point,) = [p for p in points(request, name) if attrs(p.attributes).get("tag") == tag]
    return point


def test_the_final_push_adds_up_to_summary_json(runs: dict[str, Any]) -> None:
    proc = runs["procs"]["good"]
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = _summary(runs["good"])
    got = runs["received"]
    assert runs["rejected"] == []
    assert summary["live"]["otlp"] == {"url": runs["url"], "pushes": len(got), "failed": 0,
                                       "last_error": None, "warning": None}
    assert len(got) >= 3  # a push a second while the run went, and the final one
    final = max(got, key=lambda r: points(r, "loadtest.chunks")[0].time_unix_nano)
    assert final is got[-1]
    resource = attrs(final.resource_metrics[0].resource.attributes)
    assert resource["run"] == "otlp-e2e" and resource["run_id"] == runs["good"].name
    scopes = [(tag, figures) for tag, figures in [(None, summary), *summary["by_tag"].items()]]
    assert "tier=free" in summary["by_tag"]
    for tag, figures in scopes:
        assert figures["requests"]["completed"] > 0
        for outcome, field in OUTCOMES.items():
            point = [p for p in points(final, "loadtest.requests")
                     if attrs(p.attributes).get("tag") == tag and attrs(p.attributes)["outcome"] == outcome]
            assert [p.as_int for p in point] == [figures["requests"][field]], (tag, outcome)
        for metric in LIVE_METRICS:
            point = _series(final, HISTOGRAM_NAMES[metric][0], tag)
            latency = figures["latency_ms"][metric]
            assert point.count == latency["count"] > 0, (tag, metric)
            assert point.zero_count + sum(point.positive.bucket_counts) == point.count
            assert point.sum / point.count * 1e3 == pytest.approx(latency["mean"], abs=6e-4)
            assert attrs(point.attributes)["run_id"] == runs["good"].name


def test_pushes_during_the_run_are_cumulative(runs: dict[str, Any]) -> None:
    got = runs["received"]
    counts = [p.as_int for r in got for p in points(r, "loadtest.requests")
              if attrs(p.attributes).get("tag") is None and attrs(p.attributes)["outcome"] == "ok"]
    assert len(counts) == len(got)
    assert counts == sorted(counts)
    e2e = [_series(r, "gen_ai.client.operation.duration", None).count for r in got]
    assert e2e == sorted(e2e) and e2e[-1] > 0
    starts = {_series(r, "loadtest.chunks", None).start_time_unix_nano for r in got}
    assert len(starts) == 1  # one cumulative series from the pusher's start


def test_an_unreachable_collector_is_a_warning_and_the_run_passes(runs: dict[str, Any]) -> None:
    proc = runs["procs"]["down"]
    assert proc.returncode == 0, proc.stderr + proc.stdout
    otlp = _summary(runs["down"])["live"]["otlp"]
    assert otlp["url"] == runs["down_url"]
    assert otlp["pushes"] == 0 and otlp["failed"] >= 1
    assert otlp["last_error"] == "connection refused"
    assert otlp["warning"] == (f"OTLP collector {runs['down_url']}: {otlp['failed']} of {otlp['failed']} "
                               "pushes failed (connection refused)")
    console = proc.stderr + proc.stdout
    assert console.count("OTLP collector") == 1  # warned once, not once a push
    assert "Traceback" not in console and "Failed to export" not in console
