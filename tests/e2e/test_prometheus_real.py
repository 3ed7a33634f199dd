"""A real Prometheus server scrapes a run's /metrics (issue 21): what it stored equals the run's
summary.json — request counts by outcome, error counts, and each histogram's _count and the mean
from _sum/_count — for one worker and for two merged, the whole run and a tag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import ROOT, run_cli
from support.promserver import Prometheus, free_port, needs_prometheus, prometheus

pytestmark = [pytest.mark.realtime, needs_prometheus]

SCENARIO = """\
name: live
target: {url: mock}
mock:
  ttft_ms: {dist: lognormal, median: 40, p99: 150}
  gap_ms: 5
  chunks: 8
  faults: {error_instead: 0.05}
load: {mode: closed, concurrency: 8, duration: 6s, warmup: 1s, seed: 3}
session:
  steps:
    - gen: {prompt: "hello", enableWebSearch: true, web_search_share: 0.5}
    - think: 20ms
slo: {error_rate: 1}
"""


def last(metric: str, selector: str) -> str:
    """The last value Prometheus stored (range selectors skip the staleness marker it writes once
    the endpoint is gone)."""
    return f"last_over_time({metric}{{{selector}}}[5m])"


@pytest.fixture(scope="module")
def scraper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, int]]:
    """One Prometheus for the module, scraping one port every second: each run serves /metrics
    there in turn (its series told apart by run_id)."""
    port = free_port()
    with prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{port}"]) as prom:
        yield prom, port


@pytest.mark.parametrize("workers", [1, 2])
def test_what_prometheus_stored_equals_summary_json(tmp_path: Path, workers: int,
                                                    scraper: tuple[Prometheus, int]) -> None:
    scenario = tmp_path / "live.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    prom, port = scraper
    out = tmp_path / f"run-w{workers}"
    proc = run_cli("run", str(scenario), "--out", str(out), "--no-html", "-q", "--workers", str(workers),
                   "--prometheus", f"127.0.0.1:{port}", "--prometheus-linger", "3s")
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    run = f'run_id="{out.name}",run="live"'
    whole = f'{run},tag=""'
    for outcome, field in (("ok", "completed"), ("failed", "failed"), ("dropped", "dropped"),
                           ("cancelled", "cancelled"), ("abandoned", "abandoned")):
        stored = prom.value(last("loadtest_requests_total", f'{whole},outcome="{outcome}"'))
        assert stored == s["requests"][field], outcome
    assert s["requests"]["failed"] > 0  # the fault model made some: the failed series is tested
    for category, n in s["errors"].items():
        assert prom.value(last("loadtest_errors_total", f'{whole},category="{category}"')) == n
    for metric in ("ttft", "itl", "tpot", "e2e"):
        count = prom.value(last(f"loadtest_{metric}_seconds_count", whole))
        total = prom.value(last(f"loadtest_{metric}_seconds_sum", whole))
        assert count == s["latency_ms"][metric]["count"] > 0, metric
        assert total / count * 1000 == pytest.approx(s["latency_ms"][metric]["mean"], abs=0.0006), metric
        inf = prom.value(last(f"loadtest_{metric}_seconds_bucket", f'{whole},le="+Inf"'))
        assert inf == count
    window = s["window"]["end_s"] - s["window"]["start_s"]
    chunks = prom.value(last("loadtest_chunks_total", whole))
    assert chunks == pytest.approx(s["throughput"]["chunks_per_s"] * window, abs=1)
    # a class: the tag's own series equal by_tag
    tag = s["by_tag"]["web_search=true"]
    stored = prom.value(last("loadtest_requests_total", f'{run},tag="web_search=true",outcome="ok"'))
    assert stored == tag["requests"]["completed"] > 0
    ttft_n = prom.value(last("loadtest_ttft_seconds_count", f'{run},tag="web_search=true"'))
    assert ttft_n == tag["latency_ms"]["ttft"]["count"]
    # live, not only at the end: Prometheus saw the counter grow while the run went on
    seen = prom.query(f'count_over_time(loadtest_requests_total{{{whole},outcome="ok"}}[5m])')
    assert float(seen[0]["value"][1]) >= 5
    grew = prom.value(f'changes(loadtest_requests_total{{{whole},outcome="ok"}}[5m])')
    assert grew >= 3
    assert s["live"]["prometheus"]["scrapes"] >= 5
    if workers == 1:
        dashboard_queries_answer(prom, out.name)


def dashboard_queries_answer(prom: Prometheus, run_id: str) -> None:
    """Every query of examples/grafana-dashboard.json parses and finds data of this run (its
    metric names and labels are the ones served), evaluated over the window the run was scraped."""
    board = json.loads((ROOT / "examples" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        if "output_tokens" in expr:
            continue  # only with a tokenizer
        q = expr.replace("$run_id", run_id).replace("$tag", ".+").replace("$__rate_interval", "3s")
        # the run ended seconds ago: ask for the last value of the query over the last minute
        result = prom.query(f"max_over_time(({q})[1m:1s])")
        assert result, f"no data for the dashboard's {expr}"
