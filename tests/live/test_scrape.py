"""The target's Prometheus metrics scraped during a run (issue 21), against a test server with
known figures (tests/support/metricsserver.py) over real sockets and threads."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from support.metricsserver import AUTH_PASSWORD, AUTH_USER, MetricsServer

from loadtest.live.scrape import MAX_SAMPLES_PER_SCRAPE, TargetScraper, display_url, render_labels

realtime = pytest.mark.realtime


def _series(rows: list[dict[str, Any]], metric: str, target: int = 0) -> list[dict[str, Any]]:
    return [r for r in rows if r["metric"] == metric and r["target"] == target]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- pure


def test_labels_are_rendered_sorted_and_escaped_as_prometheus_writes_them() -> None:
    assert render_labels({}) == ""
    assert render_labels({"b": "y", "a": "x"}) == '{a="x",b="y"}'
    assert render_labels({"q": 'say "hi"\\\n'}) == '{q="say \\"hi\\"\\\\\\n"}'


def test_display_url_hides_a_password_and_secret_query_values() -> None:
    assert display_url("http://u:hunter2@h:9/metrics") == "http://u:***@h:9/metrics"
    assert display_url("http://u@h:9/metrics") == "http://u@h:9/metrics"
    shown = display_url("https://h/metrics?token=abc123&name[]=up&apikey=zzz")
    assert "abc123" not in shown and "zzz" not in shown
    assert "token=***" in shown and "name[]=up" in shown
    assert display_url("http://127.0.0.1:8080/metrics") == "http://127.0.0.1:8080/metrics"


def test_stop_before_start_and_rows_of_nothing_are_empty() -> None:
    scraper = TargetScraper(["http://127.0.0.1:1/metrics"])
    scraper.stop()  # never started: nothing to do, no scrape
    assert scraper.rows(0) == []
    assert scraper.status()["scrapes"] == {"http://127.0.0.1:1/metrics": 0}
    assert scraper.status()["failed"] == {"http://127.0.0.1:1/metrics": 0}


# ---------------------------------------------------------------- a known counter


@realtime
def test_a_known_counter_is_scraped_once_a_second_and_ends_at_the_servers_final_count() -> None:
    with MetricsServer(tick_s=0.1) as server:
        scraper = TargetScraper([server.url()])
        scraper.start()
        t0 = time.time_ns()  # the run's clock starts after the "before" scrape
        time.sleep(5.0)
        scraper.stop()
        served = server.served("/metrics")
    rows = scraper.rows(t0)
    reqs = _series(rows, "test_requests_total")
    # before + one a second for 5 s (4 or 5 ticks) + after
    assert 6 <= len(reqs) <= 8, [r["t_s"] for r in reqs]
    # every answer the server gave is a row, in order, with the value it served
    assert [r["value"] for r in reqs] == [s.values["test_requests_total"] for s in served]
    assert reqs[-1]["value"] == served[-1].values["test_requests_total"] == len(served)
    ticks = _series(rows, "test_ticks_total")
    assert ticks[-1]["value"] == served[-1].values["test_ticks_total"] >= 45  # ~10 a second for 5 s
    times = [r["t_s"] for r in reqs]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[0] < 0 < times[1]  # the "before" scrape came before t0
    # a fixed schedule: the k-th periodic scrape about k s after the "before" one (no drift)
    for k, t in enumerate(times[1:-1], start=1):
        assert abs((t - times[0]) - k) < 0.25, (k, times)
    # the row's time is when the answer arrived: within a few ms of the server's own log
    for row, s in zip(reqs, served, strict=True):
        assert abs(row["t_s"] - (s.t_ns - t0) / 1e9) < 0.1
    status = scraper.status()
    assert status["scrapes"] == {server.url(): len(served)}
    assert status["failed"] == {server.url(): 0}
    assert status["last_error"] == {server.url(): None}
    assert status["samples"] == len(rows)
    json.dumps(status)  # goes into summary.json as it is


@realtime
def test_every_sample_is_kept_with_its_labels_histograms_included() -> None:
    with MetricsServer() as server:
        server.queue_depth = 3
        scraper = TargetScraper([server.url()], interval_s=10)
        scraper.start()
        scraper.stop()
    rows = scraper.rows(0)
    first_t = rows[0]["t_s"]
    one_scrape = {(r["metric"], r["labels"]): r["value"] for r in rows if r["t_s"] == first_t}
    assert one_scrape[("test_queue_depth", "")] == 3
    assert one_scrape[("test_latency_seconds_bucket", '{le="+Inf"}')] == 4
    assert one_scrape[("test_latency_seconds_bucket", '{le="0.1"}')] == 1
    assert one_scrape[("test_latency_seconds_count", "")] == 4
    assert one_scrape[("test_labelled", '{note="a \\"quoted\\" value",path="/v2/chat"}')] == 7
    assert len(one_scrape) == 9  # 3 counters and gauges, 3 buckets, _sum, _count, the labelled one
    assert scraper.status()["scrapes"] == {server.url(): 2}  # before and after, no tick in 10 s
    assert abs(first_t - time.time_ns() / 1e9) < 30  # t0 = 0: seconds since the epoch


@realtime
def test_samples_beyond_the_cap_are_cut_and_counted() -> None:
    with MetricsServer() as server:
        url = server.url("/big?n=2500")
        scraper = TargetScraper([url], interval_s=10)
        scraper.start()
        scraper.stop()
    rows = scraper.rows(0)
    status = scraper.status()
    assert len(rows) == 2 * MAX_SAMPLES_PER_SCRAPE
    assert status["samples_cut"] == {url: 2 * 500}
    assert status["samples"] == len(rows)


@realtime
def test_several_targets_are_told_apart_by_their_position() -> None:
    with MetricsServer() as a, MetricsServer() as b:
        b.queue_depth = 9
        scraper = TargetScraper([a.url(), b.url()], interval_s=0.3)
        scraper.start()
        time.sleep(1.0)
        scraper.stop()
        served_a, served_b = a.served(), b.served()
    rows = scraper.rows(0)
    assert {r["value"] for r in _series(rows, "test_queue_depth", 0)} == {0}
    assert {r["value"] for r in _series(rows, "test_queue_depth", 1)} == {9}
    assert len(_series(rows, "test_requests_total", 0)) == len(served_a) >= 4
    assert len(_series(rows, "test_requests_total", 1)) == len(served_b) >= 4
    assert [r["t_s"] for r in rows] == sorted(r["t_s"] for r in rows)


# ---------------------------------------------------------------- failures: counted, never fatal


@realtime
def test_bad_targets_are_counted_with_their_last_error_and_never_raise() -> None:
    timeout = 0.3
    with MetricsServer(slow_s=2.0) as server:
        bad = {
            server.url("/html"): "HTML",
            server.url("/garbage"): "not Prometheus text",
            server.url("/binary"): "binary",
            server.url("/status500"): "HTTP 500",
            server.url("/slow"): "timed out",
            f"http://127.0.0.1:{_closed_port()}/metrics": "refused",
        }
        good = server.url("/metrics")
        scraper = TargetScraper([*bad, good], interval_s=0.5, timeout_s=timeout)
        began = time.monotonic()
        scraper.start()
        start_s = time.monotonic() - began
        time.sleep(1.2)
        began = time.monotonic()
        scraper.stop()
        stop_s = time.monotonic() - began
        scraper.stop()  # idempotent: no further scrape
    status = scraper.status()
    # start and stop are bounded by the timeout (the URLs are scraped side by side)
    assert start_s < timeout + 0.4, start_s
    assert stop_s < 2 * timeout + 0.4, stop_s
    for url, word in bad.items():
        assert status["scrapes"][url] == 0, url
        assert status["failed"][url] >= 3, (url, status["failed"])  # before, >= 1 tick, after
        error = status["last_error"][url]
        assert error is not None and word in error, (url, error)
        assert "\n" not in error and len(error) <= 160
    assert status["failed"][good] == 0
    assert status["scrapes"][good] >= 3
    assert status["scrapes"][good] == len(_series(scraper.rows(0), "test_requests_total", len(bad)))
    assert {r["target"] for r in scraper.rows(0)} == {len(bad)}  # nothing kept from a failed one


@realtime
def test_an_empty_answer_is_a_scrape_with_no_samples() -> None:
    with MetricsServer() as server:
        scraper = TargetScraper([server.url("/empty")], interval_s=10)
        scraper.start()
        scraper.stop()
    assert scraper.status()["scrapes"] == {server.url("/empty"): 2}
    assert scraper.rows(0) == []


# ---------------------------------------------------------------- secrets


@realtime
def test_a_password_in_the_url_is_sent_as_basic_auth_and_never_shown() -> None:
    with MetricsServer() as server:
        good = f"http://{AUTH_USER}:{AUTH_PASSWORD}@127.0.0.1:{server.port}/auth"
        wrong = f"http://{AUTH_USER}:wrong-{AUTH_PASSWORD}@127.0.0.1:{server.port}/auth"
        scraper = TargetScraper([good, wrong], interval_s=10)
        scraper.start()
        scraper.stop()
        statuses = [s.status for s in server.served("/auth")]
    status = scraper.status()
    text = json.dumps(status) + json.dumps(scraper.rows(0))
    assert AUTH_PASSWORD not in text
    shown_good = f"http://{AUTH_USER}:***@127.0.0.1:{server.port}/auth"
    # alike but for the hidden password: told apart by their position
    assert status["urls"] == [shown_good, f"{shown_good} [1]"]
    assert sorted(statuses) == [200, 200, 401, 401]
    assert status["scrapes"] == {shown_good: 2, f"{shown_good} [1]": 0}
    assert status["last_error"][f"{shown_good} [1]"] == "HTTP 401 Unauthorized"
    assert len(_series(scraper.rows(0), "test_requests_total", 0)) == 2
