"""Per-second rows release their histograms once the live view no longer reads them
(a long run would otherwise grow by ~0.6 MB a second: see benchmarks/bench_soak.py)."""

from __future__ import annotations

from loadtest.metrics.collector import Collector, RequestRecord

S = 1_000_000_000


def _ok(c: Collector, rid: int, at_s: float, ttft_ms: float) -> None:
    t_send = round(at_s * S)
    rec = RequestRecord(request_id=rid, user=0, t_send=t_send, t_first=t_send + round(ttft_ms * 1e6),
                        t_stop=t_send + round(ttft_ms * 2e6), chunks=1, outcome="ok")
    rec.t_last = rec.t_first
    c.on_request(rec, rec.t_stop)


def test_old_rows_keep_their_percentiles_but_not_their_histograms() -> None:
    c = Collector(t0_ns=0, warmup_s=0)
    for s in range(30):
        for i in range(10):
            _ok(c, s * 10 + i, s + 0.1, ttft_ms=10 + s + i / 10)
        c.on_loop_lag(1_000_000 + s * 1000, round((s + 0.5) * S))
        c.tick(round((s + 0.9) * S), active_sessions=1, in_flight=0)
    before = c.timeseries()
    old, recent = c.seconds[3], c.seconds[25]
    assert old.encoded is not None and old.ttft is None and old.e2e is None and old.loop_lag is None
    assert recent.encoded is None and recent.ttft is not None  # the live view's window
    # freezing changes no figure of timeseries.csv
    for row in c.seconds.values():
        row.freeze()
    assert c.timeseries() == before
    assert before[3]["ttft_p50_ms"] is not None and 13.0 <= before[3]["ttft_p50_ms"] <= 13.5
    assert before[3]["loop_lag_p99_ms"] is not None


def test_dropped_histograms_are_freed_without_the_cyclic_gc() -> None:
    """hdrh's histogram and its encoder form a cycle; Recorder breaks it when it lets go."""
    import gc
    import weakref

    from loadtest.metrics.recorder import Recorder

    gc.disable()
    try:
        r = Recorder()
        r.record_us(5)
        first = weakref.ref(r._h)
        r.reset()
        assert first() is None  # freed at once, not at the next full collection
        second = weakref.ref(r._h)
        del r
        assert second() is None
        decoded = Recorder.decode(Recorder().encode())
        assert decoded.count == 0
    finally:
        gc.enable()
