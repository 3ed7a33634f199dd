"""The collector's accounting, with hand-made timestamps (no loop, no sockets)."""

from __future__ import annotations

import pytest

from loadtest.engine.selfwatch import saturation_reasons
from loadtest.metrics.collector import Collector, RequestRecord
from loadtest.slo import error_rate, evaluate

S = 1_000_000_000
MS = 1_000_000
T0 = 10 * S


def ok_request(rid: int, start: int, *, ttft_ms: int = 100, chunks: int = 3, gap_ms: int = 10,
               intended: int = 0) -> RequestRecord:
    r = RequestRecord(request_id=rid, user=0)
    r.t_send = start
    r.t_intended = intended or start
    r.scheduled = bool(intended)
    r.t_first = start + ttft_ms * MS
    r.gaps_ns = [gap_ms * MS] * (chunks - 1)
    r.t_last = r.t_first + sum(r.gaps_ns)
    r.t_stop = r.t_last
    r.chunks, r.chars, r.outcome = chunks, 5 * chunks, "ok"
    r.chunk_chars = [5] * chunks
    return r


def test_warmup_requests_stay_out_of_figures_but_in_the_time_series() -> None:
    rows: list[RequestRecord] = []
    c = Collector(t0_ns=T0, warmup_s=2, request_sink=lambda r, t0: rows.append(r))
    for i, at in enumerate((T0 + S // 2, T0 + 3 * S)):
        r = ok_request(i + 1, at)
        r.phase = c.phase_of(at)
        c.on_sent(r)
        c.on_request(r, r.t_stop)
    assert [r.phase for r in rows] == ["warmup", "measure"]
    assert c.completed == 1 and c.started == 1
    c.close_intervals(T0 + 4 * S, final=True)
    ts = c.timeseries()
    assert [row["completions"] for row in ts] == [1, 0, 0, 1]
    assert ts[0]["phase"] == "warmup" and ts[3]["phase"] == "measure"
    assert ts[0]["ttft_p50_ms"] == pytest.approx(100.0, rel=1e-3)  # warmup visible in the time series
    assert c.metrics.totals["ttft"].count == 1  # …but not in the histograms
    assert sum(1 for s in c.intervals if "ttft" in s.histograms) == 1
    assert c.intervals[0].start_s == 2.0  # intervals begin at the end of warmup


def test_success_feeds_every_latency_metric_exactly() -> None:
    c = Collector(t0_ns=T0, warmup_s=0)
    r = ok_request(1, T0 + S, ttft_ms=100, chunks=5, gap_ms=10, intended=T0 + S - 50 * MS)
    c.on_sent(r)
    c.on_request(r, r.t_stop)
    c.close_intervals(T0 + 3 * S, final=True)
    s = c.metrics.summary_ms()
    hdr = pytest.approx  # HdrHistogram, 3 significant digits: within 0.1 %
    assert s["ttft"]["p50"] == hdr(150.0, rel=1e-3) and s["ttft_uncorrected"]["p50"] == hdr(100.0, rel=1e-3)
    assert s["e2e"]["p50"] == hdr(190.0, rel=1e-3) and s["e2e_uncorrected"]["p50"] == hdr(140.0, rel=1e-3)
    assert s["itl"]["count"] == 4 and s["itl"]["p50"] == hdr(10.0, rel=1e-3)
    assert s["tpot"]["p50"] == hdr(10.0, rel=1e-3)
    assert s["schedule_lag"]["p50"] == hdr(50.0, rel=1e-3)
    assert c.chunks_per_answer == {5: 1}


def test_failures_are_counted_by_category_and_keep_what_they_observed() -> None:
    c = Collector(t0_ns=T0, warmup_s=0)
    r = ok_request(1, T0 + S, ttft_ms=100, chunks=3, gap_ms=10)  # first token and 2 gaps, then it failed
    r.t_stop = 0
    r.outcome, r.error_category, r.error_message = "failed", "timeout", "stream did not finish"
    c.on_sent(r)
    c.on_request(r, T0 + 2 * S)
    c.on_failure("connect", "cannot connect", T0 + S)
    assert c.failed == 1 and c.completed == 0
    assert c.errors["timeout"] == 1 and c.errors["connect"] == 1
    assert c.error_samples["timeout"] == ["stream did not finish"]
    c.close_intervals(T0 + 3 * S, final=True)
    t = c.metrics.totals
    # a failed request's TTFT and gaps were really observed: kept, and counted as such
    assert t["ttft"].count == 1 and t["itl"].count == 2
    assert c.failed_samples == {"ttft": 1, "itl": 2}
    # e2e and TPOT describe completed answers only
    assert t["e2e"].count == 0 and t["tpot"].count == 0
    assert sum(row["err_timeout"] for row in c.timeseries()) == 1
    # the connect failure is a failed session step
    assert (c.steps, c.steps_failed) == (1, 1)


def test_a_request_that_failed_before_its_first_token_adds_no_latency() -> None:
    c = Collector(t0_ns=T0, warmup_s=0)
    r = RequestRecord(request_id=1, user=0, t_send=T0 + S, t_intended=T0 + S, outcome="failed",
                      error_category="server_error")
    c.on_sent(r)
    c.on_request(r, T0 + S + 5 * MS)
    c.close_intervals(T0 + 3 * S, final=True)
    assert c.metrics.totals["ttft"].count == 0 and c.failed_samples["ttft"] == 0


def test_error_samples_are_bounded() -> None:
    c = Collector(t0_ns=T0, warmup_s=0)
    for i in range(50):
        c.on_failure("connect", f"message {i}", T0 + S)
    assert len(c.error_samples["connect"]) == 5 and c.errors["connect"] == 50


def test_slo_verdicts() -> None:
    summary = {
        "latency_ms": {"ttft": {"p99": 120.0}, "itl": {"p99": None}},
        "requests": {"completed": 90, "failed": 5, "dropped": 5},
        "throughput": {"requests_per_s": 9.5},
    }
    v = evaluate({"ttft_p99_ms": 100, "itl_p99_ms": 50, "error_rate": 0.2, "min_throughput_rps": 10}, summary)
    assert v["ttft_p99_ms"] == {"limit": 100, "value": 120.0, "pass": False}
    assert v["itl_p99_ms"]["pass"] is False  # no data is not a pass
    assert v["error_rate"] == {"limit": 0.2, "value": 0.1, "pass": True}
    assert v["min_throughput_rps"]["pass"] is False
    assert error_rate({"completed": 0, "failed": 0}) == 0.0


def test_saturation_rules() -> None:
    assert saturation_reasons(2.0, [40.0, 50.0, 60.0]) == []
    assert "lag" in saturation_reasons(12.5, [])[0]
    assert "CPU" in saturation_reasons(3.0, [95.0, 96.0, 20.0])[0]
    assert "CPU" in saturation_reasons(0.2, [95.0, 96.0], schedule_lag_p99_ms=4.0)[0]
    # busy but never late (open-loop timer polling): not saturated
    assert saturation_reasons(0.2, [99.0, 99.0, 98.0], schedule_lag_p99_ms=0.1) == []
    assert saturation_reasons(3.0, [95.0, 20.0, 20.0]) == []  # a spike is not "stays above"


# ---------------------------------------------------------------------- the measured window (issue 9)


def _closed(c: Collector, r: RequestRecord) -> None:
    r.phase = c.phase_of(r.t_intended or r.t_send)
    c.on_sent(r)
    c.on_request(r, r.t_stop or r.t_send)


def test_rates_count_events_inside_the_window_and_the_drain_apart() -> None:
    # window [1 s, 7 s): three answers of 3 s each, the last one ends in the drain
    c = Collector(t0_ns=T0, warmup_s=1, duration_s=7)
    for i, start_s in enumerate((1.5, 3.5, 5.5)):
        r = ok_request(i + 1, T0 + round(start_s * S), ttft_ms=100, chunks=30, gap_ms=100)
        _closed(c, r)
    # stops at 4.4 s, 6.4 s, 8.4 s
    assert c.window_s == 6.0
    assert c.ok_in_window == 2  # the third one stopped after the window
    assert c.completed == 3  # …but it belongs to the run's cohort (intended inside the window)
    assert c.drain["completed"] == 1
    # chunks by their own arrival time: the third answer's chunks at 5.6 .. 8.5 s, 14 inside
    assert c.chunks == 30 + 30 + 14 and c.chars == 5 * c.chunks


def test_per_second_completions_sum_to_the_window_count() -> None:
    c = Collector(t0_ns=T0, warmup_s=1, duration_s=5)
    for i in range(40):
        _closed(c, ok_request(i + 1, T0 + 500 * MS + i * 137 * MS, ttft_ms=30, chunks=4, gap_ms=20))
    c.close_intervals(T0 + 10 * S, final=True)
    ts = c.timeseries()
    in_window = [row for row in ts if row["phase"] == "measure"]
    assert [row["t_s"] for row in in_window] == [1, 2, 3, 4]
    assert sum(row["completions"] for row in in_window) == c.ok_in_window
    assert sum(row["chunks"] for row in in_window) == c.chunks
    assert {row["phase"] for row in ts if row["t_s"] >= 5} == {"drain"}


def test_a_stop_before_the_end_ends_the_window_there() -> None:
    c = Collector(t0_ns=T0, warmup_s=0, duration_s=10)
    _closed(c, ok_request(1, T0 + S, ttft_ms=10, chunks=2, gap_ms=10))
    c.end_window(T0 + 3 * S)  # a signal at 3 s
    _closed(c, ok_request(2, T0 + 2 * S + 900 * MS, ttft_ms=200, chunks=2, gap_ms=10))  # stops at 3.11 s
    assert c.window_s == 3.0
    assert c.ok_in_window == 1 and c.drain["completed"] == 1


def test_achieved_rate_counts_sends_inside_the_window_only() -> None:
    # open loop: 10 arrivals intended in the window, the generator sends 4 of them after it
    c = Collector(t0_ns=T0, warmup_s=0, duration_s=2)
    for i in range(10):
        intended = T0 + i * 190 * MS
        c.on_offered(intended)
        r = ok_request(i + 1, intended + (i >= 6) * 900 * MS, intended=intended, ttft_ms=5, chunks=1)
        _closed(c, r)
    assert c.offered == 10 and c.sent_in_window == 6 and c.sent_after_window == 4
    c.close_intervals(T0 + 5 * S, final=True)
    t = c.metrics.totals
    assert t["send_lag"].count == 10 and t["send_lag"].max_us == pytest.approx(900_000, rel=1e-3)


def test_an_early_send_is_counted_not_hidden() -> None:
    c = Collector(t0_ns=T0, warmup_s=0, duration_s=2)
    r = ok_request(1, T0 + S - 300_000, intended=T0 + S)  # sent 0.3 ms before its time
    _closed(c, r)
    assert c.early_sends == 1


def test_error_rate_counts_every_request_the_target_did_not_serve() -> None:
    assert error_rate({"completed": 90, "failed": 5, "dropped": 3, "cancelled": 2}) == pytest.approx(0.1)
    assert error_rate({"completed": 0, "cancelled": 4}) == 1.0


def test_a_sample_goes_to_the_interval_of_its_own_time() -> None:
    # the ticker stalled: nothing closed second 1 before a sample of second 2 arrived
    c = Collector(t0_ns=T0, warmup_s=0, duration_s=5)
    _closed(c, ok_request(1, T0 + 1 * S + 100 * MS, ttft_ms=10, chunks=1))
    _closed(c, ok_request(2, T0 + 2 * S + 100 * MS, ttft_ms=10, chunks=1))
    c.close_intervals(T0 + 3 * S, final=True)
    with_ttft = [(s.start_s, s.end_s) for s in c.intervals if "ttft" in s.histograms]
    assert with_ttft == [(1.0, 2.0), (2.0, 3.0)]
