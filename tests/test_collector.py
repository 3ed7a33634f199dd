"""The collector's accounting, with hand-made timestamps (no loop, no sockets)."""

from __future__ import annotations

import pytest

from loadtest.collector import Collector, RequestRecord
from loadtest.selfwatch import saturation_reasons
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


def test_failures_are_counted_by_category_and_kept_out_of_latency() -> None:
    c = Collector(t0_ns=T0, warmup_s=0)
    r = ok_request(1, T0 + S)
    r.outcome, r.error_category, r.error_message = "failed", "timeout", "no first token within 1 s"
    c.on_sent(r)
    c.on_request(r, T0 + 2 * S)
    c.on_failure("connect", "cannot connect", T0 + S)
    assert c.failed == 1 and c.completed == 0
    assert c.errors["timeout"] == 1 and c.errors["connect"] == 1
    assert c.error_samples["timeout"] == ["no first token within 1 s"]
    c.close_intervals(T0 + 3 * S, final=True)
    assert c.metrics.totals["ttft"].count == 0 and c.metrics.totals["itl"].count == 0
    assert sum(row["err_timeout"] for row in c.timeseries()) == 1


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
